// Child processes for scripts and tests: start a binary, wait until it says
// it is ready, stop it cleanly. Shared by scripts/demo.mjs and tests/e2e/.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "../..");

/** The path of a workspace binary (`cargo build -p NAME`), or null if it was not built. */
export function builtBinary(name, profile = "debug") {
  const target = process.env.CARGO_TARGET_DIR || join(root, "target");
  const path = join(target, profile, name);
  return existsSync(path) ? path : null;
}

/**
 * Starts `bin` with `args` and extra `env`, and resolves once a line of its
 * stdout or stderr matches `ready` (a RegExp: the sandbox prints
 * `listening on URL` on stdout, the hard-limit service logs
 * `listening addr=ADDR` on stderr), with `{ match, stop, output }`. `stop()`
 * sends SIGTERM (SIGKILL after 3 s) and resolves when it has exited.
 * Rejects if the process exits or stays silent for `timeoutMs` first; the
 * rejection carries the end of its output.
 */
export function spawnProcess(bin, args, env = {}, { ready = /listening on (\S+)/, timeoutMs = 15000 } = {}) {
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const output = [];
  const keep = (line) => {
    output.push(line);
    if (output.length > 200) output.shift();
  };
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    }
  };
  return new Promise((resolve, reject) => {
    let done = false;
    const fail = (why) => {
      if (done) return;
      done = true;
      stop();
      reject(new Error(`${bin} ${why}\n${output.slice(-30).join("\n")}`));
    };
    const timer = setTimeout(() => fail(`printed no ready line within ${timeoutMs} ms`), timeoutMs);
    exited.then(({ code, signal }) => fail(`exited (code ${code}, signal ${signal}) before it was ready`));
    child.once("error", (error) => fail(`could not be started: ${error.message}`));
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on("line", (line) => {
        keep(line);
        const match = done ? null : line.match(ready);
        if (match) {
          done = true;
          clearTimeout(timer);
          resolve({ match, stop, output, child });
        }
      });
    }
  });
}

/**
 * Polls `condition` (sync or async) every `intervalMs` until it is truthy;
 * rejects after `timeoutMs` naming `what` (a string or a function giving one).
 */
export async function waitFor(condition, { timeoutMs = 15000, intervalMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "function" ? what() : what}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
