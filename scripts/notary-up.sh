#!/usr/bin/env bash
# Starts the development notary for `make run` unless something already listens on its port:
# its data (redb, blobs, log) under build/notary/, its key the pinned build/keys/notary.key the
# dev image was built with. Leaves it running in the background; its output is in
# build/notary/notary.log.
#
# Then plays the dev farmer (build/keys/farmer.key, the farm the dev image names): registers the
# farm and leaves `nullos farm approve --pending --watch` running, so the node `make run` boots
# is enrolled as soon as it registers and `nullos deploy` can place on it (log:
# build/notary/farmer.log). Only for this development notary: any machine can name a farm.
set -euo pipefail
dir=build/notary
addr=127.0.0.1
port=7878
nullos=target/release/nullos

dev_farmer() {
    local pidfile=$dir/farmer.pid
    if [[ -e $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        return 0
    fi
    export NULLOS_NOTARY="http://$addr:$port" NULLOS_NOTARY_KEY=build/keys/notary.pub \
        NULLOS_STATE=$dir/farmer-state
    if ! "$nullos" farm register --key build/keys/farmer.key --name dev >>"$dir/farmer.log" 2>&1; then
        echo "farmer: could not register the dev farm; see $dir/farmer.log" >&2
        return 1
    fi
    nohup "$nullos" farm approve --pending --watch 2 --key build/keys/farmer.key \
        >>"$dir/farmer.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    echo "farmer: the dev farm enrolls the nodes that name it (pid $!, log $dir/farmer.log)"
}

mkdir -p "$dir"
if (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then
    echo "notary: something already listens on $addr:$port; using it"
    dev_farmer
    exit 0
fi
if [[ ! -e $dir/notary.key ]]; then
    install -m 0600 build/keys/notary.key "$dir/notary.key"
fi
nohup target/release/nullos-notary serve --data "$dir" --listen "$addr:$port" \
    >"$dir/notary.log" 2>&1 </dev/null &
for _ in $(seq 1 100); do
    if grep -q "listening on" "$dir/notary.log" 2>/dev/null; then
        head -n 1 "$dir/notary.log"
        echo "notary: explorer at http://$addr:$port/ (pid $!, log $dir/notary.log)"
        dev_farmer
        exit 0
    fi
    sleep 0.1
done
echo "notary: did not start; see $dir/notary.log" >&2
exit 1
