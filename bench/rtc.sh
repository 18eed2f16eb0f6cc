#!/usr/bin/env bash
# Real WebRTC load: how many mesh rooms (K webrtc-rs peers each, every pair connected: data
# channel + video + audio) can connect at once before the connected p99 passes 2 s. Two
# Switchboard nodes clustered through their own redis-server, the peers of every room spread
# over both nodes; all peers in one switchboard-peer process on the same machine. Rooms double
# from START until the p99 of join -> all data channels open passes 2000 ms (or more than 1%
# of the peers fail) or MAX is reached.
# One JSON line per step, also appended to bench/results/DATE-rtc-mesh.jsonl.
# Usage: bench/rtc.sh [START=5] [MAX=320] [PEERS_PER_ROOM=4] [THREADS=2]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
start=${1:-5} max=${2:-320} k=${3:-4} threads=${4:-2}
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
out=$root/bench/results/$(date +%F)-rtc-mesh.jsonl

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
  urls+=("ws://127.0.0.1:$p/v1/ws")
done
rooms=$start
while [ "$rooms" -le "$max" ]; do
  line=$("$bin/switchboard-peer" --threads "$threads" load --urls "$(IFS=,; echo "${urls[*]}")" --rooms "$rooms" \
    --peers-per-room "$k" --messages 10 --media-secs 2 --timeout-secs 60 || true)
  echo "$line" | tee -a "$out"
  # Past the mark: a p99 over 2 s, or more than 1% of the peers never connected.
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); ok=r["connected_ms"]["p99"]<=2000 and r["connected_peers"]>=0.99*r["peers"]; sys.exit(0 if ok else 1)' "$line" 2>/dev/null || break
  rooms=$((rooms * 2))
done
