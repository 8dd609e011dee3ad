#!/usr/bin/env bash
# Starts the development notary for `make run` unless something already listens on its port:
# its data (redb, blobs, log) under build/notary/, its key the pinned build/keys/notary.key the
# dev image was built with. Leaves it running in the background; its output is in
# build/notary/notary.log.
set -euo pipefail
dir=build/notary
addr=127.0.0.1
port=7878
if (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then
    echo "notary: something already listens on $addr:$port; using it"
    exit 0
fi
mkdir -p "$dir"
if [[ ! -e $dir/notary.key ]]; then
    install -m 0600 build/keys/notary.key "$dir/notary.key"
fi
nohup target/release/nullos-notary serve --data "$dir" --listen "$addr:$port" \
    >"$dir/notary.log" 2>&1 </dev/null &
for _ in $(seq 1 100); do
    if grep -q "listening on" "$dir/notary.log" 2>/dev/null; then
        head -n 1 "$dir/notary.log"
        echo "notary: explorer at http://$addr:$port/ (pid $!, log $dir/notary.log)"
        exit 0
    fi
    sleep 0.1
done
echo "notary: did not start; see $dir/notary.log" >&2
exit 1
