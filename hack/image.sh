#!/usr/bin/env bash
# Builds the operator image without a container engine: a static (musl) release build of `mom`,
# packed by hack/oci_image.py into dist/mom-image-<version>.tar (an OCI layout that is also a
# `docker save` archive). Then checks it: every digest matches, and the /mom inside runs with an
# empty environment and no shared libraries.
#
#   hack/image.sh                      # tag ghcr.io/hypersync/mom:<Cargo version>
#   IMAGE=registry.example/mom:dev hack/image.sh
#
# Load it with `docker load -i dist/mom-image-<version>.tar`, `kind load image-archive
# dist/mom-image-<version>.tar --name mom`, or push it with `skopeo copy oci-archive:...`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${IMAGE:-ghcr.io/hypersync/mom:$version}
target=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
# ring compiles a little C; without musl-gcc the host gcc does (it needs no libc headers there).
command -v musl-gcc >/dev/null && export CC_x86_64_unknown_linux_musl=musl-gcc \
  || export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc}
target_dir=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --locked --target "$target" --bin mom >&2
bin=$target_dir/$target/release/mom
if readelf -l "$bin" 2>/dev/null | grep -q "Requesting program interpreter"; then
  echo "image.sh: $bin is dynamically linked; the image has no libc" >&2
  exit 1
fi
mkdir -p dist
out=dist/mom-image-$version.tar
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[[ -f $ca ]] || { echo "image.sh: no CA bundle at $ca (set CA_BUNDLE)" >&2; exit 1; }
python3 hack/oci_image.py --binary "$bin" --tag "$tag" --out "$out" --ca-bundle "$ca" --check
# The binary inside the archive runs on its own.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$out" "$tmp" <<'PY'
import io, json, sys, tarfile
archive, dest = sys.argv[1], sys.argv[2]
with tarfile.open(archive) as t:
    manifest = json.load(t.extractfile("manifest.json"))[0]
    layer = t.extractfile(manifest["Layers"][0]).read()
with tarfile.open(fileobj=io.BytesIO(layer)) as l:
    l.extractall(dest, filter="tar")
PY
if [[ $(id -u) -eq 0 ]] && command -v chroot >/dev/null; then
  # As the image's user, seeing nothing but the image's files (mktemp made the root 0700).
  chmod 755 "$tmp"
  chroot --userspec=65532:65532 "$tmp" /mom version >&2
else
  env -i "$tmp/mom" version >&2
fi
