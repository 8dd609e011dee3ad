#!/usr/bin/env bash
# Fetches a stock Debian kernel and unpacks it for image-builder.
#
# usage: scripts/fetch-kernel.sh <meta-package> <dest-dir>
#   e.g. scripts/fetch-kernel.sh linux-image-cloud-amd64 build/kernels/cloud
#
# The meta-package's Depends names the versioned package (linux-image-6.1.0-NN-cloud-amd64);
# that .deb is downloaded with apt-get (no root needed once the package lists exist), kept next to
# the tree, and unpacked with `dpkg-deb -R` so DEBIAN/control (package name and version, which go
# into the signed release's build inputs) sits beside boot/ and lib/modules/.
set -euo pipefail

meta=${1:?usage: fetch-kernel.sh <meta-package> <dest-dir>}
dest=${2:?usage: fetch-kernel.sh <meta-package> <dest-dir>}
debs=$(dirname "$dest")
mkdir -p "$debs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

download() {
    # apt-get prints a harmless warning when root downloads into a folder _apt cannot write.
    (cd "$work" && apt-get download "$1" 2>&1 | grep -v 'Download is performed unsandboxed' || true)
    ls "$work"/"$1"_*.deb >/dev/null 2>&1
}

if ! download "$meta"; then
    if [ "$(id -u)" = 0 ]; then
        echo "fetch-kernel: $meta not in the package lists; running apt-get update" >&2
        apt-get update -qq
    fi
    download "$meta" || { echo "fetch-kernel: cannot download $meta (is this Debian 12 with its package lists? try: sudo apt-get update)" >&2; exit 1; }
fi
versioned=$(dpkg-deb -f "$work/${meta}"_*.deb Depends | tr ',|' '\n\n' | grep -o 'linux-image-[^ ]*' | head -n 1)
[ -n "$versioned" ] || { echo "fetch-kernel: $meta names no linux-image dependency" >&2; exit 1; }
download "$versioned" || { echo "fetch-kernel: cannot download $versioned" >&2; exit 1; }
deb=$(ls "$work/${versioned}"_*.deb)
rm -rf "$dest.partial"
dpkg-deb -R "$deb" "$dest.partial"
cp "$deb" "$debs/"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "fetch-kernel: $(basename "$deb") unpacked into $dest"
