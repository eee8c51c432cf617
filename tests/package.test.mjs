// The npm package as users get it: packed with the README's own `npm pack`
// command, checked for its licenses and metadata, installed into a fresh
// Vite + TypeScript app, type-checked with tsc, built with Vite, and run in
// headless Chromium. Needs the npm registry (for vite) on first run; later
// runs reuse npm's cache.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, open, serve } from "./support/browser.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const VITE = "7.3.1";
let app, server, browser, tarball;

// The command exactly as the README tells users to run it (one command,
// wherever it is written): a path without `./` would make npm fetch the
// registry package of that name instead.
const readme = readFileSync(join(root, "README.md"), "utf8");
const packCommands = [...new Set([...readme.matchAll(/`(npm pack [^`]*)`/g)].map((m) => m[1]))];

const sh = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

before(() => {
  app = mkdtempSync(join(tmpdir(), "eyeson-guard-vite-"));
  cpSync(join(root, "tests/vite-app"), app, { recursive: true });
  assert.equal(packCommands.length, 1, `the README names one npm pack command: ${packCommands}`);
  const [npm, ...args] = packCommands[0].split(" ");
  sh(npm, [...args, "--pack-destination", app, "--silent"], root);
  tarball = readdirSync(app).find((f) => f.endsWith(".tgz"));
  sh("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", `./${tarball}`, `vite@${VITE}`, "eyeson@1.9.6"], app);
});
after(async () => {
  await browser?.close();
  await server?.close();
  if (app) rmSync(app, { recursive: true, force: true });
});

test("the README's npm pack command names the local folder, not a registry package", () => {
  assert.match(packCommands[0], /^npm pack \.\/pkg$/);
});

test("the tarball holds exactly the package files, the licenses among them", () => {
  const listed = sh("tar", ["-tzf", join(app, tarball)], app).trim().split("\n").map((f) => f.replace(/^package\//, "")).sort();
  assert.deepEqual(listed, [
    "LICENSE-APACHE", "LICENSE-MIT", "README.md", "drop-in.js", "eyeson_guard.d.ts", "eyeson_guard.js",
    "eyeson_guard_bg.wasm", "eyeson_guard_bg.wasm.d.ts", "package.json",
  ]);
  const file = (name) => sh("tar", ["-xzOf", join(app, tarball), `package/${name}`], app);
  assert.equal(file("LICENSE-MIT"), readFileSync(join(root, "LICENSE-MIT"), "utf8"));
  assert.equal(file("LICENSE-APACHE"), readFileSync(join(root, "LICENSE-APACHE"), "utf8"));
  assert.match(file("LICENSE-MIT"), /Copyright \(c\) the eyeson-guard authors/);
  const meta = JSON.parse(file("package.json"));
  const repo = /^repository = "(.+)"$/m.exec(readFileSync(join(root, "Cargo.toml"), "utf8"))[1];
  assert.equal(meta.license, "MIT OR Apache-2.0");
  assert.deepEqual(meta.repository, { type: "git", url: `git+${repo}.git` });
  assert.equal(meta.homepage, `${repo}#readme`);
  assert.deepEqual(meta.bugs, { url: `${repo}/issues` });
});

test("its TypeScript types are precise, not any", () => {
  // Fails on any type error in main.ts and on any @ts-expect-error that is not an error.
  sh(join(root, "node_modules/.bin/tsc"), ["-p", join(app, "tsconfig.json")], app);
  // And the real SDK's declared type is accepted as the first argument.
  sh(join(root, "node_modules/.bin/tsc"), ["-p", join(app, "real-sdk/tsconfig.json")], app);
});

test("a fresh Vite app builds it and runs it with just `await init()`", async () => {
  sh(join(app, "node_modules/.bin/vite"), ["build", "--logLevel", "warn"], app);
  const assets = readdirSync(join(app, "dist/assets"));
  assert.ok(assets.some((f) => f.endsWith(".wasm")), `Vite emitted the wasm: ${assets}`);
  server = await serve({ "/": join(app, "dist") });
  browser = await launch();
  const { page, errors } = await open(browser, `${server.url}/`);
  // main.ts sets window.result after its top-level `await init()`.
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 10_000 });
  const result = await page.evaluate(() => window.result);
  assert.deepEqual(result, {
    states: ["active", "prompted", "terminated"],
    sent: [{ type: "session_termination" }],
  });
  assert.deepEqual(errors.uncaught, []);
});
