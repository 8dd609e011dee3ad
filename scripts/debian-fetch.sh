# Shared by fetch-kernel.sh and fetch-tools.sh (sourced, not run): reading debian.lock and
# downloading exactly the pinned .deb files.

# The lock file (the repository's debian.lock unless DEBIAN_LOCK names another).
LOCK=${DEBIAN_LOCK:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/debian.lock}

# The lock lines whose role is $1 (comments and blank lines skipped).
lock_lines() {
    [ -f "$LOCK" ] || { echo "fetch: no $LOCK: run \`make lock\`" >&2; exit 1; }
    awk -v role="$1" '!/^#/ && NF && $1 == role' "$LOCK"
}

# fetch_deb <package> <version> <sha256> <cache-dir>: puts the verified .deb in the cache (kept
# there; a cached file with the right SHA-256 is not downloaded again) and prints its path.
fetch_deb() {
    local package=$1 version=$2 sha=$3 cache=$4 work deb
    mkdir -p "$cache"
    # apt-get names the file with the version's epoch colon written as %3a.
    deb="$cache/${package}_${version//:/%3a}_amd64.deb"
    if [ -f "$deb" ] && echo "$sha  $deb" | sha256sum --check --status; then
        echo "$deb"
        return
    fi
    work=$(mktemp -d)
    if ! download "$work" "$package=$version"; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq >&2
            download "$work" "$package=$version" || true
        fi
    fi
    local got
    got=$(find "$work" -name '*.deb' | head -n 1)
    if [ -z "$got" ]; then
        rm -rf "$work"
        echo "fetch: $package $version (debian.lock) is not served by the Debian archive any more: run \`make lock\` to pin the current version" >&2
        exit 1
    fi
    if ! echo "$sha  $got" | sha256sum --check --status; then
        rm -rf "$work"
        echo "fetch: $package $version does not have the SHA-256 debian.lock pins ($sha): refusing it" >&2
        exit 1
    fi
    mv "$got" "$deb"
    rm -rf "$work"
    echo "$deb"
}

# download <dir> <package=version>: apt-get download into dir, quietly.
download() {
    # apt-get prints a harmless warning when root downloads into a folder _apt cannot write.
    (cd "$1" && apt-get download -qq "$2" >/dev/null 2>&1)
}
