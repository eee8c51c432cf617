// Compiled with tsc --noEmit, never run. Each @ts-expect-error must be an
// error: were the published types `any`, tsc would fail on the unused ones.
import { InactivityGuard, type EyesonSdk, type HardLimitKind, type InactivityGuardOptions } from "eyeson-guard";

declare const eyeson: EyesonSdk;

// @ts-expect-error a typo in an option name
new InactivityGuard(eyeson, { timoutMs: 1000 });
// @ts-expect-error timeoutMs is a number
new InactivityGuard(eyeson, { timeoutMs: "10m" });
// @ts-expect-error the first argument must look like the SDK
new InactivityGuard({ send() {} }, {});
// @ts-expect-error onPrompt receives a number
new InactivityGuard(eyeson, { onPrompt: (ms: string) => ms });

// onHardLimit: the end and which one it is; a one-argument callback (as
// before the alone deadline) still fits.
new InactivityGuard(eyeson, {
  text: { aloneNotice: "Du bist allein. Ende in {time}." },
  onHardLimit: (endMs: number, kind: HardLimitKind) => void (kind === "alone" ? endMs : 0),
});
new InactivityGuard(eyeson, { onHardLimit: (deadlineMs: number) => void deadlineMs });
// @ts-expect-error the kind is "deadline" or "alone"
new InactivityGuard(eyeson, { onHardLimit: (_ms: number, kind: "idle") => kind });
// @ts-expect-error a typo in a text key
new InactivityGuard(eyeson, { text: { alonenotice: "{time}" } });

const guard = new InactivityGuard(eyeson, { timeoutMs: 1000 } satisfies InactivityGuardOptions);
// @ts-expect-error "idle" is not a state
if (guard.state === "idle") throw new Error();
const left: number = guard.remainingMs();
// @ts-expect-error remainingMs returns a number
const wrong: string = guard.remainingMs();
guard.stop();
export { left, wrong };
