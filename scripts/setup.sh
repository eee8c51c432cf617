#!/bin/sh
# Installs what building needs; with --browsers also what testing needs,
# with --release what `npm run release` needs (the musl target, musl-gcc,
# umoci). Idempotent: every step checks first, so a second run takes about
# a second.
# Everything comes from crates.io, the npm registry or Debian's apt: nothing
# downloads binaries from elsewhere (wasm-pack and `npx playwright install`
# would, and fail on closed networks).
set -eu
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  say "installing wasm-bindgen-cli $want (once; takes a few minutes)"
  # Not --locked: its lockfile pins a webpki-roots version crates.io no longer serves.
  cargo install wasm-bindgen-cli --version "$want" --force
fi

# npm dependencies (wasm-opt from binaryen, esbuild, playwright-core, eyeson).
# A node_modules that is a link (shared with another checkout) is left
# alone: npm ci would empty the folder it points to.
if [ -L node_modules ]; then
  say "node_modules is a link; not reinstalling npm dependencies"
elif [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund
fi

sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
# Debian packages named by their command: installs those missing, one apt run.
apt_for() {
  missing=""
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || missing="$missing $2"
    shift 2
  done
  if [ -n "$missing" ]; then
    say "installing Debian's$missing"
    $sudo_ apt-get update
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y --no-install-recommends $missing
  fi
}

if [ "${1:-}" = "--release" ]; then
  if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    say "adding the x86_64-unknown-linux-musl target"
    rustup target add x86_64-unknown-linux-musl
  fi
  # musl-gcc builds the bundled SQLite and ring; umoci packs the OCI image
  # without a daemon; strip from binutils.
  apt_for musl-gcc musl-tools umoci umoci strip binutils
fi

if [ "${1:-}" = "--browsers" ]; then
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || ! command -v firefox-esr >/dev/null 2>&1; then
    say "installing Debian's chromium, chromium-driver and firefox-esr"
    $sudo_ apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y --no-install-recommends chromium chromium-driver firefox-esr
  fi
  # systemd-analyze (the unit's checks) from systemd.
  apt_for systemd-analyze systemd
  # promtool (the alert rules' tests) taken out of Debian's prometheus
  # package into target/tools, not installed: installing the package would
  # also start a Prometheus server on a machine that runs systemd.
  if ! command -v promtool >/dev/null 2>&1 && [ ! -x target/tools/promtool ]; then
    say "unpacking promtool from Debian's prometheus package into target/tools"
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
      $sudo_ apt-get update
      (cd "$tmp" && apt-get download prometheus)
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
    mkdir -p target/tools
    cp "$tmp/root/usr/bin/promtool" target/tools/promtool
    rm -rf "$tmp"
  fi
  # Firefox's WebDriver is not packaged by Debian; crates.io has it.
  if ! command -v geckodriver >/dev/null 2>&1; then
    say "installing geckodriver (cargo install, once; takes a few minutes)"
    cargo install geckodriver --locked
  fi
fi
