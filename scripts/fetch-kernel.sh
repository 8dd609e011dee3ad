#!/usr/bin/env bash
# Fetches the stock Debian kernel debian.lock pins for <name> and unpacks it for image-builder.
#
# usage: scripts/fetch-kernel.sh <name> <dest-dir>
#   e.g. scripts/fetch-kernel.sh cloud build/kernels/cloud   (lock line `kernel:cloud ...`)
#
# The pinned version of the versioned package (linux-image-6.1.0-NN-cloud-amd64) is downloaded
# with apt-get (no root needed once the package lists exist), its SHA-256 checked against the
# lock, kept next to the tree, and unpacked with `dpkg-deb -R` so DEBIAN/control (package name
# and version, which go into the signed release's build inputs) sits beside boot/ and
# lib/modules/. `<dest-dir>.lock` records the lock line the tree was unpacked from: when it is
# the lock's, nothing is done.
set -euo pipefail
. "$(dirname "$0")/debian-fetch.sh"

name=${1:?usage: fetch-kernel.sh <name> <dest-dir>}
dest=${2:?usage: fetch-kernel.sh <name> <dest-dir>}
pinned=$(lock_lines "kernel:$name")
[ "$(echo "$pinned" | grep -c .)" = 1 ] || { echo "fetch-kernel: $LOCK pins no single kernel:$name: run \`make lock\`" >&2; exit 1; }
if [ -f "$dest/DEBIAN/control" ] && [ "$(cat "$dest.lock" 2>/dev/null)" = "$pinned" ]; then
    exit 0
fi
read -r _ package version sha <<<"$pinned"
deb=$(fetch_deb "$package" "$version" "$sha" "$(dirname "$dest")")
rm -rf "$dest.partial"
dpkg-deb -R "$deb" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "$pinned" >"$dest.lock"
echo "fetch-kernel: $(basename "$deb") unpacked into $dest"
