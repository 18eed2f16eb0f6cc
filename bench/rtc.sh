#!/usr/bin/env bash
# Real WebRTC load: how many calls (pairs of webrtc-rs peers, data channel + video + audio)
# can connect at once before the connect-time p99 passes 2 s. Two Switchboard nodes clustered
# through their own redis-server, the two peers of every call on different nodes; the peers
# run in one switchboard-peer process on the same machine. Pairs double from START until the
# p99 of join -> data-channel-open passes 2000 ms or MAX is reached. One JSON line per step.
# Usage: bench/rtc.sh [START=10] [MAX=640] [THREADS=2]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
start=${1:-10} max=${2:-640} threads=${3:-2}
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

cargo build --quiet --release -p switchboard-node -p switchboard --features switchboard/rtc
rp=$(port); redis-server --port "$rp" --save '' --appendonly no >/dev/null & pids+=($!)
wait_port "$rp"
urls=()
for n in a b; do
  p=$(port)
  "$bin/switchboard-node" --listen "127.0.0.1:$p" --node-id "rtc-$n" --redis-url "redis://127.0.0.1:$rp" \
    --log warn "${unlimited[@]}" >/dev/null & pids+=($!)
  wait_port "$p"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done
  urls+=(--url "ws://127.0.0.1:$p/v1/ws")
done
pairs=$start
while [ "$pairs" -le "$max" ]; do
  line=$("$bin/switchboard-peer" --threads "$threads" smoke "${urls[@]}" --pairs "$pairs" --messages 10 \
    --media-secs 2 --timeout-secs 60 || true)
  echo "$line"
  p99=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["join_to_open_ms"]["p99"] or 0)' "$line" 2>/dev/null || echo 99999)
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= 2000 else 1)' "$p99" || break
  pairs=$((pairs * 2))
done
