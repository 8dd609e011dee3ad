#!/usr/bin/env bash
# Pins the Debian packages NullOS images are built from: resolves the current version of each
# with apt (the host's package lists, refreshed first when run as root) and rewrites debian.lock.
# `make lock` runs it; nothing else writes the lock file.
#
# usage: scripts/debian-lock.sh <lock-file> <kernel-name>=<meta-package>... -- <tool-package>...
#   e.g. scripts/debian-lock.sh debian.lock cloud=linux-image-cloud-amd64 -- e2fsprogs libc6
#
# A kernel is named by its meta-package, whose Depends names the versioned package
# (linux-image-6.1.0-NN-cloud-amd64); the versioned package is what the lock pins. Tool packages
# are pinned as named. The SHA-256 is the one apt's package index gives for that .deb.
set -euo pipefail

lock=${1:?usage: debian-lock.sh <lock-file> <name>=<meta-package>... -- <tool-package>...}
shift
kernels=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do kernels+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
tools=("$@")

if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
else
    echo "debian-lock: not root, using the package lists as they are (sudo apt-get update to refresh)" >&2
fi

# The candidate version's field $2 of package $1 (the version apt would install).
field() {
    apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n "s/^$2: //p" | head -n 1
}

# One lock line: <role> <package> <version> <sha256>.
line() {
    local role=$1 package=$2 version sha
    version=$(field "$package" Version)
    sha=$(field "$package" SHA256)
    if [ -z "$version" ] || [ -z "$sha" ]; then
        echo "debian-lock: apt knows no package $package (is this Debian 12 with its package lists?)" >&2
        exit 1
    fi
    echo "$role $package $version $sha"
}

body=$(
    for pair in "${kernels[@]}"; do
        name=${pair%%=*}
        meta=${pair#*=}
        versioned=$(field "$meta" Depends | tr ',|' '\n\n' | grep -o 'linux-image-[^ ]*' | head -n 1)
        [ -n "$versioned" ] || { echo "debian-lock: $meta names no linux-image dependency" >&2; exit 1; }
        line "kernel:$name" "$versioned"
    done
    for package in "${tools[@]}"; do
        line tools "$package"
    done
)

tmp=$(mktemp "$lock.XXXXXX")
{
    cat <<'HEAD'
# debian.lock: the Debian packages whose files go into NullOS images, pinned to exact versions.
# Written by `make lock` (scripts/debian-lock.sh); do not edit by hand.
#
# One package a line, four fields separated by spaces:
#   <role> <package> <version> <sha256 of the .deb>
# role: kernel:<name>, unpacked into build/kernels/<name>/ by `make kernel`
#           (scripts/fetch-kernel.sh); tools, unpacked into build/sysroot/ by `make sysroot`
#           (scripts/fetch-tools.sh), where the profiles' [tools] take mke2fs and its libraries.
HEAD
    echo "$body"
} >"$tmp"
mv "$tmp" "$lock"
echo "debian-lock: $(echo "$body" | wc -l) packages pinned in $lock"
