#!/usr/bin/env bash
# Builds the image the inference integration test runs its agents in: the busybox base plus the
# host's curl and node (with the shared libraries they load) and the official OpenAI SDK from
# sdk/node_modules (installed by scripts/install-deps with `npm ci`). No registry is involved.
# Prints the image name; skips the work when an image of the same inputs exists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/deploy/podman/containers.conf}
[ -d "$here/sdk/node_modules/openai" ] ||
  { echo "build-image: $here/sdk/node_modules is missing: run scripts/install-deps (npm ci)" >&2; exit 1; }
for b in curl node; do
  command -v "$b" >/dev/null || { echo "build-image: $b is missing: run scripts/install-deps" >&2; exit 1; }
done
tag=$(cat "$0" "$here/sdk/package-lock.json" "$here/sdk/client.js" "$(command -v node)" "$(command -v curl)" | sha256sum | cut -c1-12)
image=localhost/bulwark/inference-test:$tag
if podman image exists "$image"; then echo "$image"; exit 0; fi
"$root/scripts/build-base-image" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rootfs=$tmp/rootfs
mkdir -p "$rootfs"
cid=$(podman create localhost/bulwark/base:latest true)
podman export "$cid" | tar -C "$rootfs" -x
podman rm "$cid" >/dev/null
# A binary and every library the loader resolves for it, at the same paths.
copy_with_libs() {
  local f=$1
  mkdir -p "$rootfs$(dirname "$f")"
  cp -L "$f" "$rootfs$f"
  ldd "$f" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    [ -e "$rootfs$lib" ] || cp -L "$lib" "$rootfs$lib"
  done
}
copy_with_libs "$(command -v curl)"
copy_with_libs "$(command -v node)"
mkdir -p "$rootfs/opt/sdk"
cp -r "$here/sdk/node_modules" "$here/sdk/client.js" "$rootfs/opt/sdk/"
tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "$image"
