#!/usr/bin/env bash
# Packs `kubectl mom` for krew: dist/kubectl-mom-<version>-linux-amd64.tar.gz holding the static
# (musl) `mom` as `kubectl-mom` (run under that name it is the plugin) and a LICENSE file, and
# dist/krew/mom.yaml: plugins/krew/mom.yaml with the version, the archive's URL and its sha256
# filled in.
#
#   hack/krew-package.sh                         # builds the musl release binary like `make image`
#   MOM_BIN=path/to/mom hack/krew-package.sh     # packs a binary built elsewhere
#   KREW_URL_BASE=https://example/releases/v0.1.0 hack/krew-package.sh
#
# The URL is where the archive will be uploaded (KREW_URL_BASE, default the GitHub release of
# this version); this script uploads nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
target=x86_64-unknown-linux-musl
if [[ -z ${MOM_BIN:-} ]]; then
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  command -v musl-gcc >/dev/null && export CC_x86_64_unknown_linux_musl=musl-gcc \
    || export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc}
  cargo build --release --locked --target "$target" --bin mom >&2
  MOM_BIN=${CARGO_TARGET_DIR:-$root/target}/$target/release/mom
fi
[[ -x $MOM_BIN ]] || { echo "krew-package.sh: $MOM_BIN is not an executable" >&2; exit 1; }
name=kubectl-mom-$version-linux-amd64.tar.gz
url=${KREW_URL_BASE:-https://github.com/hypersync/mom/releases/download/v$version}/$name
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$MOM_BIN" "$stage/kubectl-mom"
chmod 755 "$stage/kubectl-mom"
cat > "$stage/LICENSE" <<'LICENSE'
MOM is licensed under the Apache License, Version 2.0 (Cargo.toml `license`):
https://www.apache.org/licenses/LICENSE-2.0
LICENSE
mkdir -p dist/krew
# Reproducible: fixed order, owner and time.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - kubectl-mom LICENSE \
  | gzip -n > "dist/$name"
sha=$(sha256sum "dist/$name" | cut -d' ' -f1)
sed -e "s|@VERSION@|$version|" -e "s|@URL@|$url|" -e "s|@SHA256@|$sha|" \
    -e '/^# krew manifest/,/^# never submit/d' plugins/krew/mom.yaml > dist/krew/mom.yaml
# The rendered manifest names this archive, and the archive holds what `bin` names.
grep -q "sha256: $sha" dist/krew/mom.yaml
tar -tzf "dist/$name" | grep -x kubectl-mom >/dev/null
echo "dist/$name"
echo "dist/krew/mom.yaml"
