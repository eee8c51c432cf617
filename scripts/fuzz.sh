#!/bin/sh
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for the given number of
# seconds each (default 60): `npm run fuzz -- 600`. A second argument picks
# cargo-fuzz's sanitizer (default `address`); `npm test`'s short run passes
# `none`: the fuzzed code is safe Rust, and without AddressSanitizer a fresh
# machine builds the targets in 5.6 min instead of 9.2 and runs 4-5x the
# inputs in the same seconds (measured 2026-12-07). Needs the nightly
# toolchain (these machines come with one; none can be fetched); without it
# this says so and exits 0. Installs cargo-fuzz (crates.io) once.
#
# Each target starts from the seed corpus kept in the repository
# (fuzz/seeds/TARGET, read-only) plus what earlier runs found
# (fuzz/corpus/TARGET, git-ignored). A crash fails the run; libFuzzer
# writes the input to fuzz/artifacts/TARGET/.
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-60}
sanitizer=${2:-address}
say() { printf '\033[1m[fuzz]\033[0m %s\n' "$*"; }

if ! rustup toolchain list | grep -q '^nightly'; then
  say "skipped: no nightly toolchain (rustup toolchain list); cargo-fuzz needs one"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (once; a few minutes)"
  # Not --locked: cargo-fuzz's lockfile can pin versions the registry no longer serves.
  cargo install cargo-fuzz
fi

cd fuzz
# The fuzz crate is its own workspace with its own lockfile: it must follow
# the other crates' dependencies (a stale lock is how the fuzz build broke before).
if ! cargo +nightly metadata --locked --format-version 1 >/dev/null 2>&1; then
  say "fuzz/Cargo.lock is stale: run (cd fuzz && cargo +nightly update --workspace) and commit it"
  exit 1
fi
# Each sanitizer builds into its own directory: switching never rebuilds.
build="-O -s $sanitizer --target-dir target/$sanitizer"
say "building the targets (nightly, sanitizer: $sanitizer; the first build takes minutes)"
cargo +nightly fuzz build $build
mkdir -p corpus
for target in $(cargo +nightly fuzz list); do
  mkdir -p "corpus/$target" "seeds/$target"
  say "$target: ${seconds} s"
  log="target/fuzz-$target.log"
  if ! cargo +nightly fuzz run $build "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    say "$target: FAILED (input saved under fuzz/artifacts/$target/)"
    exit 1
  fi
  # The last status line (executions, coverage, features, corpus) and the totals.
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/cov \1, ft \2, corpus \3/')
  say "$target: ${runs} executions, ${cov}, no crash"
done
