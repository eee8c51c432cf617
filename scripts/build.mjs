// Builds the release package into pkg/: the wasm (optimised with npm's
// binaryen), the ES module glue and types for bundlers, the classic-script
// drop-in, and the package.json that `npm pack pkg` publishes.
// Assumes scripts/setup.sh ran (npm run build does that first).
import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = join(root, "pkg");
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: "inherit" });
const version = /^version = "(.+)"$/m.exec(readFileSync(join(root, "Cargo.toml"), "utf8"))[1];

run("cargo", ["build", "--profile", "wasm-release", "--lib", "--target", "wasm32-unknown-unknown", "-p", "eyeson-guard", "--features", "tiny-runtime"]);
const target = process.env.CARGO_TARGET_DIR || join(root, "target");
rmSync(pkg, { recursive: true, force: true });
run("wasm-bindgen", [
  "--target", "web", "--out-dir", pkg, "--out-name", "eyeson_guard",
  join(target, "wasm32-unknown-unknown/wasm-release/eyeson_guard.wasm"),
]);
const wasm = join(pkg, "eyeson_guard_bg.wasm");
run(join(root, "node_modules/.bin/wasm-opt"), ["-Oz", "--strip-debug", "--strip-producers", wasm, "-o", wasm]);

// The ES module for bundlers: the glue with its JS snippet (hot_path.js)
// bundled in and minified, so pkg/ is one JS file, one wasm file
// and the types.
const glue = join(pkg, "eyeson_guard.js");
await build({
  entryPoints: [glue],
  outfile: glue,
  allowOverwrite: true,
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  legalComments: "none",
  logLevel: "warning",
});
rmSync(join(pkg, "snippets"), { recursive: true, force: true });

// wasm-bindgen declares `[Symbol.dispose]`, which fails type-checking for
// every app whose `lib` predates ESNext's disposables (skipLibCheck: false).
// The method still exists at run time; the declaration is dropped.
const dts = join(pkg, "eyeson_guard.d.ts");
writeFileSync(dts, readFileSync(dts, "utf8").replace(/^\s*\[Symbol\.dispose\]\(\): void;\n/m, ""));

// The drop-in: one classic script with the wasm inlined.
await build({
  entryPoints: [join(root, "js/drop-in.js")],
  outfile: join(pkg, "drop-in.js"),
  bundle: true,
  format: "iife",
  minify: true,
  target: "es2020",
  loader: { ".wasm": "binary" },
  // The glue's default wasm URL uses import.meta.url; the drop-in passes the bytes instead.
  define: { "import.meta.url": "undefined" },
  legalComments: "none",
  logLevel: "warning",
});

writeFileSync(join(pkg, "package.json"), JSON.stringify({
  name: "eyeson-guard",
  version,
  description: "Ends abandoned eyeson video meetings: an inactivity guard for the eyeson JS SDK (Rust/WebAssembly)",
  license: "MIT OR Apache-2.0",
  type: "module",
  main: "eyeson_guard.js",
  module: "eyeson_guard.js",
  types: "eyeson_guard.d.ts",
  exports: {
    ".": { types: "./eyeson_guard.d.ts", default: "./eyeson_guard.js" },
    "./drop-in.js": "./drop-in.js",
    "./eyeson_guard_bg.wasm": "./eyeson_guard_bg.wasm",
    "./package.json": "./package.json",
  },
  files: ["eyeson_guard.js", "eyeson_guard.d.ts", "eyeson_guard_bg.wasm", "eyeson_guard_bg.wasm.d.ts", "drop-in.js", "README.md"],
  sideEffects: ["./drop-in.js"],
  keywords: ["eyeson", "idle", "inactivity", "video", "meeting", "wasm"],
}, null, 2) + "\n");
copyFileSync(join(root, "README.md"), join(pkg, "README.md"));
console.log("[build] pkg/ ready");
