// What a Vite + TypeScript user writes: the documented `await init()`, then
// the class. The eyeson SDK is stood in for by a recording fake here.
import init, { InactivityGuard, type EyesonSdk, type GuardState } from "eyeson-guard";

const sent: { type: string }[] = [];
const listeners = new Set<(event: { type: string }) => void>();
const eyeson: EyesonSdk = {
  onEvent: (fn) => void listeners.add(fn),
  offEvent: (fn) => void listeners.delete(fn),
  send: (message) => void sent.push({ ...message }),
};

await init();
const states: GuardState[] = [];
const guard = new InactivityGuard(eyeson, {
  timeoutMs: 1500, // the prompt starts after 500 ms and lasts 1 s: observable under load
  promptMs: 1000,
  dialog: false,
  onPrompt: (remainingMs: number) => states.push(remainingMs > 0 ? "prompted" : "active"),
  onTerminate: (reason: "idle") => states.push(reason === "idle" ? "terminated" : "stopped"),
});
for (const fn of listeners) fn({ type: "accept" });
states.push(guard.state);

declare global {
  interface Window { result: Promise<{ states: GuardState[]; sent: { type: string }[] }> }
}
window.result = new Promise((resolve) => {
  const poll = () => (guard.state === "terminated" ? resolve({ states, sent }) : setTimeout(poll, 10));
  poll();
});
