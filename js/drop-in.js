// The one-line <script> drop-in: a classic script (no type="module") that
// defines window.EyesonGuard = { ready, InactivityGuard, shareActivity }.
//
//   <script src="https://…/eyeson.js"></script>
//   <script src="https://…/eyeson-guard/drop-in.js" data-timeout-ms="600000"></script>
//
// With data-timeout-ms (and optional data-prompt-ms, data-hard-limit) it also creates a guard
// on window.eyeson.default and exposes it as window.EyesonGuard.guard.
// The wasm is inlined, so this one file is all a page needs. It is bundled
// as an IIFE, so the eyeson SDK's `window.exports = {}` cannot make it
// export into the wrong place.
import init, { InactivityGuard, shareActivity } from "../pkg/eyeson_guard.js";
import wasmText from "../pkg/eyeson_guard_bg.wasm";
import { decode } from "./wasm-text.js";

// Inlined as text that gzips almost as well as the wasm itself (see
// wasm-text.js); decoding takes under a millisecond (10 ms cold).
const wasm = decode(wasmText);

const script = document.currentScript;
const data = (script && script.dataset) || {};

function number(name, value) {
  const n = Number(value);
  if (value === undefined) return undefined;
  if (value.trim() === "" || Number.isNaN(n)) {
    throw new Error(`eyeson-guard: data-${name} must be a number of milliseconds, got "${value}"`);
  }
  return n;
}

// The SDK's script may come after this one; wait for the document to be parsed.
const parsed = () =>
  document.readyState === "loading"
    ? new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }))
    : Promise.resolve();

const api = (window.EyesonGuard = { InactivityGuard, shareActivity, guard: undefined });

api.ready = init({ module_or_path: wasm }).then(async () => {
  if (data.timeoutMs === undefined) return;
  const options = { timeoutMs: number("timeout-ms", data.timeoutMs) };
  const prompt = number("prompt-ms", data.promptMs);
  if (prompt !== undefined) options.promptMs = prompt;
  if (data.hardLimit !== undefined) options.hardLimit = data.hardLimit;
  if (!(window.eyeson && window.eyeson.default)) await parsed();
  const sdk = window.eyeson && window.eyeson.default;
  if (!sdk) {
    throw new Error("eyeson-guard: window.eyeson.default is missing; load the eyeson SDK's script before the drop-in");
  }
  api.guard = new InactivityGuard(sdk, options);
});
