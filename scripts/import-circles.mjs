// Fails when a crate's top-level modules import each other in a circle.
// A module is a file or directory directly under src/; an edge is any
// `crate::name` in its code (comments, doc links, `#[cfg(doc)]` imports and
// unit tests are skipped).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, basename } from "node:path";

const crates = process.argv.slice(2);
let circles = 0;
for (const crate of crates) {
  const src = join(crate, "src");
  const top = readdirSync(src)
    .filter((f) => f.endsWith(".rs") || statSync(join(src, f)).isDirectory())
    .map((f) => basename(f, ".rs"))
    .filter((m) => m !== "lib" && m !== "main");
  const edges = new Map(top.map((m) => [m, new Set()]));
  const files = (p) =>
    statSync(p).isDirectory() ? readdirSync(p).flatMap((f) => files(join(p, f))) : p.endsWith(".rs") ? [p] : [];
  for (const m of top) {
    const paths = [join(src, `${m}.rs`), join(src, m)].filter((p) => {
      try { statSync(p); return true; } catch { return false; }
    });
    for (const file of paths.flatMap(files)) {
      // Unit tests (at the end of a file, by convention) may use anything.
      // `#[cfg(doc)]` imports exist for doc links only: not dependencies.
      const code = readFileSync(file, "utf8")
        .split("#[cfg(test)]\nmod tests")[0]
        .replace(/\/\/.*$/gm, "")
        .replace(/#\[cfg\(doc\)\]\s*use [^;]*;/g, "");
      for (const [, dep] of code.matchAll(/crate::([a-z_][a-z0-9_]*)/g)) {
        if (dep !== m && edges.has(dep)) edges.get(m).add(dep);
      }
      // `use crate::{a, b::C}` groups
      for (const [, group] of code.matchAll(/use crate::\{([^;]*)\};/g)) {
        for (const [, dep] of group.matchAll(/(?:^|[{,\s])([a-z_][a-z0-9_]*)(?=::|\s*[,}]|$)/g)) {
          if (dep !== m && edges.has(dep)) edges.get(m).add(dep);
        }
      }
    }
  }
  // Tarjan's strongly connected components: any with two or more modules is a circle.
  let index = 0;
  const idx = new Map(), low = new Map(), stack = [], on = new Set();
  const visit = (v) => {
    idx.set(v, index); low.set(v, index); index++; stack.push(v); on.add(v);
    for (const w of edges.get(v)) {
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
      else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const scc = [];
      let w;
      do { w = stack.pop(); on.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1) {
        circles++;
        console.error(`${crate}: import circle among ${scc.sort().join(", ")}`);
        for (const a of scc) console.error(`  ${a} -> ${[...edges.get(a)].filter((b) => scc.includes(b)).join(", ")}`);
      }
    }
  };
  for (const m of top) if (!idx.has(m)) visit(m);
}
if (circles) process.exit(1);
console.log(`no import circles in ${crates.join(", ")}`);
