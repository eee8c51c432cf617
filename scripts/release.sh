#!/bin/sh
# The hard-limit service's release artifacts, in dist/:
#   eyeson-hard-limit-VERSION-x86_64-unknown-linux-musl.tar.gz
#     the static binary (musl, stripped), the systemd unit, an example
#     environment file, the alert rules and their tests, the Grafana
#     dashboard, the runbook, the licenses and INSTALL.md;
#   oci/ and eyeson-hard-limit-VERSION-oci.tar
#     an OCI image (FROM scratch: the binary alone), built with umoci, no
#     daemon: `skopeo copy oci-archive:dist/eyeson-hard-limit-VERSION-oci.tar …`
#     or `podman load -i …`.
# A cold release build takes about 10 minutes on 2 cores (run at low
# priority). `npm test` checks these artifacts when they exist.
set -eu
cd "$(dirname "$0")/.."
say() { printf '\033[1m[release]\033[0m %s\n' "$*"; }

sh scripts/setup.sh --release

target=x86_64-unknown-linux-musl
version=$(awk -F'"' '/^version = / { print $2; exit }' hard-limit/Cargo.toml)
name=eyeson-hard-limit-$version-$target
cargo_target=${CARGO_TARGET_DIR:-target}

say "building eyeson-hard-limit $version for $target"
CC_x86_64_unknown_linux_musl=musl-gcc nice -n 19 \
  cargo build --release --locked -p eyeson-hard-limit --target "$target"
built=$cargo_target/$target/release/eyeson-hard-limit
case "$(file -b "$built")" in
  *static-pie\ linked*|*statically\ linked*) ;;
  *) echo "[release] $built is not statically linked: $(file -b "$built")" >&2; exit 1 ;;
esac

# Fixed times, owners and order: the tarball is byte-for-byte reproducible
# (the image is not yet: umoci's layer differs from run to run).
epoch=$(git log -1 --format=%ct)
rm -rf dist && mkdir -p "dist/$name"
strip -o "dist/$name/eyeson-hard-limit" "$built"
cp deploy/eyeson-hard-limit.service deploy/eyeson-hard-limit.env.example \
  deploy/alerts.yml deploy/alerts.test.yml deploy/grafana-dashboard.json \
  deploy/RUNBOOK.md deploy/INSTALL.md LICENSE-MIT LICENSE-APACHE "dist/$name/"
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
  -C dist -czf "dist/$name.tar.gz" "$name"
say "dist/$name.tar.gz: $(du -k "dist/$name.tar.gz" | cut -f1) KB (binary $(du -k "dist/$name/eyeson-hard-limit" | cut -f1) KB)"

# The image: one layer holding the binary and an empty /data owned by the
# image's user; SQLite in /data (a volume); the admin listener stays on
# loopback unless ADMIN_LISTEN and ADMIN_TOKEN are set (the service refuses
# a non-loopback admin address without a token).
uid=65532
image=dist/oci
umoci init --layout "$image"
umoci new --image "$image:$version"
umoci unpack --image "$image:$version" dist/bundle
install -m 0755 "dist/$name/eyeson-hard-limit" dist/bundle/rootfs/eyeson-hard-limit
install -d -m 0700 -o "$uid" -g "$uid" dist/bundle/rootfs/data
find dist/bundle/rootfs -exec touch -h -d "@$epoch" {} +
umoci repack --image "$image:$version" --history.created "$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" dist/bundle
rm -rf dist/bundle
revision=$(git rev-parse HEAD)
umoci config --image "$image:$version" \
  --created "$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" \
  --os linux --architecture amd64 \
  --config.user "$uid:$uid" \
  --config.entrypoint /eyeson-hard-limit \
  --config.workingdir /data \
  --config.volume /data \
  --config.exposedports 8042/tcp \
  --config.env DATABASE_URL=sqlite:///data/hard-limit.db \
  --config.env LISTEN_ADDR=0.0.0.0:8042 \
  --config.env ADMIN_LISTEN=127.0.0.1:8044 \
  --config.env TMPDIR=/data \
  --clear=config.labels \
  --config.label org.opencontainers.image.title=eyeson-hard-limit \
  --config.label "org.opencontainers.image.description=Force-ends eyeson meetings that run longer than a hard limit" \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$revision" \
  --config.label "org.opencontainers.image.created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" \
  --config.label "org.opencontainers.image.licenses=MIT OR Apache-2.0" \
  --config.label org.opencontainers.image.source=https://github.com/eyeson-guard/eyeson-guard \
  --config.label org.opencontainers.image.url=https://github.com/eyeson-guard/eyeson-guard/blob/main/hard-limit/README.md \
  --config.label "org.opencontainers.image.vendor=the eyeson-guard authors"
umoci gc --layout "$image"
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
  -C "$image" -cf "dist/eyeson-hard-limit-$version-oci.tar" .
say "dist/eyeson-hard-limit-$version-oci.tar: $(du -k "dist/eyeson-hard-limit-$version-oci.tar" | cut -f1) KB"
