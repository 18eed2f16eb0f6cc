#!/usr/bin/env bash
# What recording webhook events costs Redis: the node's own join and leave scripts (records.lua
# and events.lua prepended, as the node loads them) sent with redis-cli --pipe to a fresh redis-server,
# without and with a gateway delivering webhooks (the `webhooks` marker key). Each join lands in a new room (room.started + peer.joined: the
# most a join records) and each leave empties it (peer.left + room.finished).
# Prints Redis's µs per script (its CPU time over the calls, from INFO) for each case.
# Usage: bench/webhook-events.sh [CALLS=100000]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
calls=${1:-100000}
lua=$root/node/src/bus/redis/lua
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --save '' --appendonly no >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
cli() { redis-cli -p "$port" "$@"; }
load() { { cat "$lua/records.lua"; sed 's#@SEED_PREFIX@#seed/#g' "$lua/events.lua"; cat "$lua/$1.lua"; } | cli -x SCRIPT LOAD; }
join=$(load join) leave=$(load leave)
k='sb:{bench}:'
cli SET "${k}lease:n1" 1 >/dev/null

# CPU seconds Redis has used (user + sys).
cpu() { cli INFO cpu | awk -F: '/^used_cpu_(user|sys):/{s+=$2} END{printf "%.6f", s}'; }
# The calls, in Redis's protocol for `redis-cli --pipe`: N joins, each into a room of its own,
# then their N leaves. PREFIX tells one run's rooms from the other's.
calls_file() { # PREFIX
  python3 - "$join" "$leave" "$k" "$calls" "$1" <<'PY'
import sys
join, leave, k, n, pre = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
out = sys.stdout.buffer
def cmd(*args):
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        a = a.encode()
        out.write(b"$%d\r\n%s\r\n" % (len(a), a))
keys = lambda room: [k + "lease:n1", k + "room:" + room, k + "node-rooms:n1", k + "events", k + "webhooks"]
for i in range(n):
    room = f"{pre}{i}"
    # join.lua also takes the node's limbo, before the events' keys.
    cmd("EVALSHA", join, "6", *keys(room)[:3], k + "limbo:n1", *keys(room)[3:], "n1", "1", f"p{i}", 'n1|1|{"n":"alice"}', "J", "3600000",
        k + "node:", room, "0", "", "", "bench")
for i in range(n):
    room = f"{pre}{i}"
    cmd("EVALSHA", leave, "5", *keys(room), "n1", "1", f"p{i}", "L", k + "node:", room, "left", "bench")
PY
}
run() { # LABEL PREFIX
  local file before after
  file=$(mktemp)
  calls_file "$2" >"$file"
  before=$(cpu)
  cli --pipe <"$file" >/dev/null
  after=$(cpu)
  rm -f "$file"
  python3 -c "import sys; b, a, n = map(float, sys.argv[1:]); print(f'$1: {(a - b) / (2 * n) * 1e6:.2f} µs of Redis CPU per join or leave script')" \
    "$before" "$after" "$calls"
}
run "webhooks off" off
cli SET "${k}webhooks" 1 >/dev/null
run "webhooks on " on
echo "events recorded: $(cli XLEN "${k}events") (4 per join + leave: started, joined, left, finished)"
echo "bytes per recorded event in the stream: $(cli MEMORY USAGE "${k}events" SAMPLES 0 | awk -v n="$(cli XLEN "${k}events")" '{printf "%.0f", $1 / n}')"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; redis $(redis-server --version | awk '{print $3}')"
