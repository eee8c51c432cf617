// Builds the release package into pkg/: the wasm (optimised with npm's
// binaryen), the ES module glue and types for bundlers, the classic-script
// drop-in, the licenses, and the package.json that `npm pack ./pkg` publishes.
// Assumes scripts/setup.sh ran (npm run build does that first).
import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { decode, encode } from "../js/wasm-text.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = join(root, "pkg");
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: "inherit" });
const manifest = readFileSync(join(root, "Cargo.toml"), "utf8");
const version = /^version = "(.+)"$/m.exec(manifest)[1];
// One source for the repository's address: the workspace manifest.
const repository = /^repository = "(.+)"$/m.exec(manifest)[1];

run("cargo", ["build", "--profile", "wasm-release", "--lib", "--target", "wasm32-unknown-unknown", "-p", "eyeson-guard", "--features", "tiny-runtime"]);
const target = process.env.CARGO_TARGET_DIR || join(root, "target");
rmSync(pkg, { recursive: true, force: true });
run("wasm-bindgen", [
  "--target", "web", "--out-dir", pkg, "--out-name", "eyeson_guard",
  join(target, "wasm32-unknown-unknown/wasm-release/eyeson_guard.wasm"),
]);
const wasm = join(pkg, "eyeson_guard_bg.wasm");
const glue = join(pkg, "eyeson_guard.js");
const types = join(pkg, "eyeson_guard.d.ts");
const wasmTypes = join(pkg, "eyeson_guard_bg.wasm.d.ts");
// wasm-bindgen names every import `__wbg_<name>_<16 hex digits>` (about 90
// of them, from the module "./eyeson_guard_bg.js") and some exports
// `…invoke__h<16 hex digits>`. Those hashes cannot be compressed, and each
// name is in both the wasm and the glue: renaming them to one or two letters
// (binaryen's pass, which prints the mapping; the glue and the types follow
// it below) takes 4 KB gz off the npm build (bench/README.md).
const bin = (tool) => join(root, "node_modules/.bin", tool);
// The wasm features rustc used (from the section stripped below), for
// binaryen's assembler in keepMemoryName: only these, so that it encodes
// nothing a browser of the target may not support.
const features = execFileSync(bin("wasm-opt"), [wasm, "--print-features"], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
  .split("\n").filter((line) => line.startsWith("--enable-"));
const minified = execFileSync(bin("wasm-opt"), [
  "--minify-imports-and-exports-and-modules",
  // target_features is metadata for tools, never read by browsers.
  "-Oz", "--strip-debug", "--strip-producers", "--strip-target-features", wasm, "-o", wasm,
], { cwd: root, encoding: "utf8" });
const names = JSON.parse(minified.slice(minified.indexOf("{")));
keepMemoryName(names.exports);
renameWasmNames(names.imports, names.exports.filter(([name]) => name !== "memory"));

// The one export an app may use, `memory` (in what `init()` resolves to),
// gets its name back (binaryen renames every export; no pass renames one
// back): through binaryen's text format, where it is one `(export "…"` line.
function keepMemoryName(exports) {
  const [, short] = exports.find(([name]) => name === "memory");
  let text = execFileSync(bin("wasm-dis"), [wasm], { encoding: "utf8", maxBuffer: 1 << 26 });
  const line = `(export "${short}" (memory `;
  if (text.split(line).length !== 2) throw new Error(`[build] keeping the memory's name: ${line} is not in the wasm once`);
  text = text.replace(line, () => `(export "memory" (memory `);
  const wat = join(pkg, "eyeson_guard_bg.wat");
  writeFileSync(wat, text);
  run(bin("wasm-as"), ["--mvp-features", ...features, wat, "-o", wasm]);
  rmSync(wat);
}

// Applies binaryen's renaming to the glue and the types (the wasm's exports,
// and `InitOutput`, which lists them). Every import must be found once where
// wasm-bindgen 0.2.130 puts it, and no old wasm-bindgen name may be left
// over, or the build fails: a new glue layout must not ship a module whose
// imports do not resolve.
function renameWasmNames(imports, exports) {
  const module = "./eyeson_guard_bg.js";
  let js = readFileSync(glue, "utf8");
  let exportTypes = readFileSync(wasmTypes, "utf8");
  let initTypes = readFileSync(types, "utf8");
  const rename = (text, pattern, to, what, times) => {
    const found = text.match(pattern)?.length ?? 0;
    if (times !== undefined && found !== times) {
      throw new Error(`[build] renaming the wasm's names: ${what} found ${found} times in the glue, expected ${times}`);
    }
    return text.replace(pattern, () => to);
  };
  for (const [from, name, to] of imports) {
    if (from !== module) throw new Error(`[build] an import from "${from}", expected only "${module}"`);
    js = rename(js, new RegExp(`(?<=\\n\\s*)${name}(?=: function\\()`, "g"), to, `import ${name}`, 1);
  }
  js = rename(js, /(?<=\n\s*)"\.\/eyeson_guard_bg\.js"(?=: import0,)/g, '"a"', "the import module", 1);
  for (const [name, to] of exports) {
    // Not every export is used by the glue (__instance_terminated is not).
    js = rename(js, new RegExp(`(?<=\\bwasm\\.)${name}\\b`, "g"), to);
    exportTypes = rename(exportTypes, new RegExp(`(?<=^export const )${name}(?=:)`, "gm"), to);
    initTypes = rename(initTypes, new RegExp(`(?<=^export interface InitOutput {[^}]*\\n\\s*readonly )${name}(?=:)`, "m"), to);
  }
  const renamed = new Set(["memory", ...exports.map(([, to]) => to)]);
  const left = [...js.matchAll(/\bwasm\.([\w$]+)/g)].map((m) => m[1]).filter((name) => !renamed.has(name));
  if (left.length) throw new Error(`[build] renaming the wasm's names: wasm.${left.join(", wasm.")} left in the glue`);
  writeFileSync(glue, js);
  writeFileSync(wasmTypes, exportTypes);
  writeFileSync(types, initTypes);
}

// The ES module for bundlers: the glue with its JS snippet (hot_path.js)
// bundled in and minified, so pkg/ is one JS file, one wasm file
// and the types.
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
writeFileSync(types, readFileSync(types, "utf8").replace(/^\s*\[Symbol\.dispose\]\(\): void;\n/m, ""));

// The drop-in: one classic script with the wasm inlined.
await build({
  entryPoints: [join(root, "js/drop-in.js")],
  outfile: join(pkg, "drop-in.js"),
  bundle: true,
  format: "iife",
  minify: true,
  target: "es2020",
  // The wasm as the text js/wasm-text.js decodes, which gzips almost as
  // well as the wasm (base64 would add 7 KB gz).
  plugins: [{
    name: "wasm-as-text",
    setup(b) {
      b.onLoad({ filter: /\.wasm$/ }, (args) => {
        const bytes = readFileSync(args.path);
        const text = encode(bytes);
        if (!Buffer.from(decode(text)).equals(bytes)) throw new Error("[build] the wasm's text does not decode to the wasm");
        return { contents: `export default ${JSON.stringify(text)};`, loader: "js" };
      });
    },
  }],
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
  repository: { type: "git", url: `git+${repository}.git` },
  homepage: `${repository}#readme`,
  bugs: { url: `${repository}/issues` },
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
  files: ["eyeson_guard.js", "eyeson_guard.d.ts", "eyeson_guard_bg.wasm", "eyeson_guard_bg.wasm.d.ts", "drop-in.js", "README.md", "LICENSE-MIT", "LICENSE-APACHE"],
  sideEffects: ["./drop-in.js"],
  keywords: ["eyeson", "idle", "inactivity", "video", "meeting", "wasm"],
}, null, 2) + "\n");
for (const file of ["README.md", "LICENSE-MIT", "LICENSE-APACHE"]) copyFileSync(join(root, file), join(pkg, file));
console.log("[build] pkg/ ready");
