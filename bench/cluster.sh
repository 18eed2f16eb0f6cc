#!/usr/bin/env bash
# One run, two clusters side by side, each with its own Redis:
#   - switchboard: two Switchboard nodes clustered through redis-server;
#   - sio-2: the Socket.IO + Redis-adapter anchor (../shared/bench/anchors/socketio-redis), two nodes.
# Every room spans both nodes (peer A on the first URL, peer B on the second). Measured, runs
# alternating: the Node generator (../shared/bench/load/load.js) against both clusters, the Rust
# generator (switchboard-peer) against Switchboard, and unloaded relay latency (one room,
# sequential rounds) with both peers on one node and with the peers on two nodes.
# Server CPU counts the two nodes plus their Redis.
# Usage: [WORKERS=n] bench/cluster.sh [ROOMS=200] [ROUNDS=50] [RUNS=3]
# WORKERS: each Switchboard node's --workers (default 1: two nodes, Redis and a generator
# already share two cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rooms=${1:-200} rounds=${2:-50} runs=${3:-3}
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

cargo build --quiet --release -p switchboard-node -p switchboard --features switchboard/peer
install_anchor anchors/socketio-redis
install_anchor load
workers=${WORKERS:-1}

redis() { redis-server --port "$1" --save '' --appendonly no >/dev/null & pids+=($!); }
rp=$(port); redis "$rp"; sb_redis=$!
rq=$(port); redis "$rq"; sio_redis=$!
a=$(port); b=$(port); sa=$(port); sb=$(port)
wait_port "$rp"; wait_port "$rq"
for n in a b; do
  p=${!n}
  "$bin/switchboard-node" --listen "127.0.0.1:$p" --node-id "bench-$n" --redis-url "redis://127.0.0.1:$rp" \
    --log warn --workers "$workers" "${unlimited[@]}" >/dev/null & pids+=($!)
  eval "node_$n=\$!"
done
for p in "$sa" "$sb"; do
  (cd "$work/anchors/socketio-redis" && PORT=$p REDIS_URL=redis://127.0.0.1:$rq exec node server.js) >/dev/null & pids+=($!)
done
sio_pids="${pids[*]: -2}"
for p in "$a" "$b" "$sa" "$sb"; do wait_port "$p"; done
# A clustered node is ready once its canary has gone round Redis.
for p in "$a" "$b"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done
done
sb_pids="$node_a $node_b $sb_redis" sio_all="$sio_pids $sio_redis"
sb_urls="ws://127.0.0.1:$a/ws,ws://127.0.0.1:$b/ws" sio_urls="ws://127.0.0.1:$sa,ws://127.0.0.1:$sb"

out=$(mktemp)
node_gen=(node "$work/load/load.js")
rust_gen=("$bin/switchboard-peer" load --proto seed)
for i in $(seq "$runs"); do
  measure switchboard node "$sb_pids" "${node_gen[@]}" --rooms "$rooms" --rounds "$rounds" --proto seed --urls "$sb_urls" | tee -a "$out"
  measure sio-2 node "$sio_all" "${node_gen[@]}" --rooms "$rooms" --rounds "$rounds" --proto sio --urls "$sio_urls" | tee -a "$out"
  measure switchboard rust "$sb_pids" "${rust_gen[@]}" --urls "$sb_urls" --rooms "$rooms" --rounds "$rounds" | tee -a "$out"
done
for i in $(seq "$runs"); do
  measure switchboard rust-unloaded-same "$sb_pids" "${rust_gen[@]}" --urls "ws://127.0.0.1:$a/ws" --rooms 1 --rounds 2000 | tee -a "$out"
  measure switchboard rust-unloaded-cross "$sb_pids" "${rust_gen[@]}" --urls "$sb_urls" --rooms 1 --rounds 2000 | tee -a "$out"
  measure sio-2 node-unloaded-cross "$sio_all" node "$work/load/load.js" --proto sio --urls "$sio_urls" --rooms 1 --rounds 2000 | tee -a "$out"
  measure switchboard node-unloaded-cross "$sb_pids" node "$work/load/load.js" --proto seed --urls "$sb_urls" --rooms 1 --rounds 2000 | tee -a "$out"
done

# The floor under a cross-node hop: one PUBLISH round trip to this Redis, one client, no pipelining.
publish_p50=$(redis-benchmark -p "$rp" -c 1 -n 20000 -q --csv PUBLISH bench-floor x 2>/dev/null \
  | python3 -c 'import csv,sys; rows=list(csv.reader(sys.stdin)); h=rows[0]; print(rows[-1][h.index("p50_latency_ms")] if "p50_latency_ms" in h else "")' || true)

python3 - "$out" "$(nproc)" "$(free -g | awk '/Mem:/{print $2}')" "$workers" "$rooms" "$rounds" "$publish_p50" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(server, gen, key):
    xs = [r["result"][key] for r in rows if r["server"] == server and r["generator"] == gen and key in r["result"]]
    return statistics.median(xs) if xs else None
s = {"machine": f"{sys.argv[2]} cores, {sys.argv[3]} GiB", "node_workers": int(sys.argv[4]),
     "load": f"{sys.argv[5]} rooms x {sys.argv[6]} rounds, every room on two nodes"}
sb, sio = med("switchboard", "node", "msgs_per_s"), med("sio-2", "node", "msgs_per_s")
sbp, siop = med("switchboard", "node", "p99_ms"), med("sio-2", "node", "p99_ms")
sbc, sioc = med("switchboard", "node", "server_cpu_us_per_msg"), med("sio-2", "node", "server_cpu_us_per_msg")
s["node_generator"] = {"switchboard_msgs_per_s": sb, "sio2_msgs_per_s": sio, "throughput_ratio": round(sb / sio, 2),
    "switchboard_p99_ms": sbp, "sio2_p99_ms": siop, "p99_ratio": round(sbp / siop, 3),
    "switchboard_cpu_us_per_msg": sbc, "sio2_cpu_us_per_msg": sioc, "cpu_ratio": round(sioc / sbc, 2),
    "generator_cpu_pct": {"switchboard": med("switchboard", "node", "generator_cpu_pct"), "sio-2": med("sio-2", "node", "generator_cpu_pct")},
    "lost": {k: sum(r["result"]["lost"] for r in rows if r["generator"] == "node" and r["server"] == k) for k in ("switchboard", "sio-2")}}
s["rust_generator"] = {"switchboard_msgs_per_s": med("switchboard", "rust", "msgs_per_s"),
    "p50_ms": med("switchboard", "rust", "p50_ms"), "p99_ms": med("switchboard", "rust", "p99_ms"),
    "cpu_us_per_msg": med("switchboard", "rust", "server_cpu_us_per_msg"),
    "lost": sum(r["result"]["lost"] for r in rows if r["generator"] == "rust")}
same, cross = med("switchboard", "rust-unloaded-same", "p50_ms"), med("switchboard", "rust-unloaded-cross", "p50_ms")
s["redis_publish_p50_ms"] = float(sys.argv[7]) if len(sys.argv) > 7 and sys.argv[7] else None
s["unloaded_p50_ms"] = {"switchboard_same_node": same, "switchboard_cross_node": cross,
    "cross_to_same_ratio": round(cross / same, 2),
    "node_generator_cross_node": {"switchboard": med("switchboard", "node-unloaded-cross", "p50_ms"),
                                  "sio-2": med("sio-2", "node-unloaded-cross", "p50_ms")}}
print(json.dumps({"summary": s}))
PY
