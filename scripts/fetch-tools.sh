#!/usr/bin/env bash
# Unpacks the tool packages debian.lock pins (role `tools`: e2fsprogs and the libraries of
# mke2fs's DT_NEEDED closure, libc6 for the loader) into one tree, the sysroot the profiles'
# `[tools]` take mke2fs and its libraries from, so the build host's own packages never reach an
# image.
#
# usage: scripts/fetch-tools.sh <sysroot>     e.g. scripts/fetch-tools.sh build/sysroot
#
# Each .deb is downloaded at its pinned version (cached in <sysroot>.debs/), checked against the
# lock's SHA-256 and unpacked with `dpkg-deb -x`, then /usr is merged as on an installed system.
# <sysroot>/packages.lock holds the lock lines it was made from: image-builder names these
# packages in the release manifest, and when they are the lock's, nothing is done.
set -euo pipefail
. "$(dirname "$0")/debian-fetch.sh"

dest=${1:?usage: fetch-tools.sh <sysroot>}
pinned=$(lock_lines tools)
[ -n "$pinned" ] || { echo "fetch-tools: $LOCK pins no tools packages: run \`make lock\`" >&2; exit 1; }
if [ "$(cat "$dest/packages.lock" 2>/dev/null)" = "$pinned" ]; then
    exit 0
fi
rm -rf "$dest.partial"
mkdir -p "$dest.partial"
while read -r _ package version sha; do
    deb=$(fetch_deb "$package" "$version" "$sha" "$dest.debs")
    dpkg-deb -x "$deb" "$dest.partial"
done <<<"$pinned"
# Merged /usr, as every Debian 12 system is installed: /bin, /sbin, /lib and /lib64 are links
# into /usr, so a tool and its libraries get the same paths in the image as on such a system
# (the first folder of the search that holds them), whichever folder their package ships them in.
for d in bin sbin lib lib64; do
    if [ -d "$dest.partial/$d" ] && [ ! -L "$dest.partial/$d" ]; then
        mkdir -p "$dest.partial/usr/$d"
        cp -a "$dest.partial/$d/." "$dest.partial/usr/$d/"
        rm -rf "${dest:?}.partial/$d"
    fi
    [ -e "$dest.partial/$d" ] || ln -s "usr/$d" "$dest.partial/$d"
done
echo "$pinned" >"$dest.partial/packages.lock"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "fetch-tools: $(echo "$pinned" | wc -l) packages unpacked into $dest"
