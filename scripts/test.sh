#!/bin/sh
# Every test of the project, as CI runs it (.ci/run): lints, native unit and
# property tests, browser tests of the wasm in headless Chromium and Firefox,
# then the built package:
# the drop-in in real pages and the npm tarball in a fresh Vite app; the
# service's deployment files (alert rules, systemd unit, dashboard) and,
# when `npm run release` built them, its release tarball and OCI image.
set -eu
cd "$(dirname "$0")/.."
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

sh scripts/setup.sh --browsers

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p eyeson-guard --target wasm32-unknown-unknown --all-targets --locked -- -D warnings

step "no import circles among any crate's modules"
node scripts/import-circles.mjs . hard-limit sandbox eyeson-api

step "native tests (state machine, options, properties, services)"
cargo test --workspace --locked

step "alert rules: promtool check and unit tests (deploy/alerts.yml, each alert fires and stays silent)"
promtool=$(command -v promtool || echo target/tools/promtool)
"$promtool" check rules deploy/alerts.yml
"$promtool" test rules deploy/alerts.test.yml

step "fuzz targets, a few seconds each (skipped without a nightly toolchain; npm run fuzz for longer runs)"
# Without AddressSanitizer (safe Rust; see scripts/fuzz.sh): npm run fuzz keeps it.
sh scripts/fuzz.sh 5 none

step "browser tests: wasm-bindgen-test in headless Chromium"
# Explicit: a geckodriver on PATH would otherwise win.
CHROMEDRIVER=/usr/bin/chromedriver cargo test -p eyeson-guard --target wasm32-unknown-unknown --locked

step "browser tests: wasm-bindgen-test in headless Firefox"
GECKODRIVER=$(command -v geckodriver) cargo test -p eyeson-guard --target wasm32-unknown-unknown --locked

step "release build of the package"
node scripts/build.mjs

step "services for the end-to-end tests"
# The binaries `cargo test` built above (their integration tests run them):
# nothing to do here but check. `cargo build -p …` would resolve features
# without the dev-dependencies' and rebuild tokio and all above it (~1 min).
cargo test --workspace --locked --no-run

step "the built package in real pages, and the whole system end to end (Playwright + Debian's Chromium)"
# tests/*.test.mjs and tests/e2e/*.test.mjs, one file at a time (each starts its own processes).
node --test --test-concurrency=1 tests/

step "all tests passed"
