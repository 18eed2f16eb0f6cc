#!/usr/bin/env bash
# One run, same generators, Switchboard (one node) against the seed's Node server:
#   - relay throughput and latency at ROOMS x ROUNDS under the Rust generator (switchboard-peer)
#     and under the Node generator (../shared/bench/load/load.js), runs alternating;
#   - unloaded relay latency (one room, sequential rounds);
#   - RSS per idle joined session (switchboard-peer idle) for both servers.
# Prints one JSON line per measurement, then a summary with the ratios.
# Usage: [WORKERS=n] bench/compare.sh [ROOMS=200] [ROUNDS=50] [RUNS=3] [IDLE_SESSIONS=19900]
# WORKERS is the node's --workers (default 0: one per core). The generator shares the machine,
# so on a small box one worker (one event loop, like the Node server) can be the faster node.
# Needs node, npm and python3. The node runs with rate limits off: a closed-loop generator
# sends far faster than any browser would, and the limits would (correctly) throttle it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rooms=${1:-200} rounds=${2:-50} runs=${3:-3} idle=${4:-19900}
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

cargo build --quiet --release -p switchboard-node -p switchboard --features switchboard/peer
install_anchor anchors/seed-server
install_anchor load
workers=${WORKERS:-0}
unlimited+=(--workers "$workers")

start_servers() {
  sb_port=$(port); seed_port=$(port)
  "$bin/switchboard-node" --listen "127.0.0.1:$sb_port" --log warn "${unlimited[@]}" >/dev/null & sb_pid=$!; pids+=($sb_pid)
  (cd "$work/anchors/seed-server" && WSSPORT=$seed_port HTTPPORT=$(port) exec node index.js) >/dev/null & seed_pid=$!; pids+=($seed_pid)
  wait_port "$sb_port"; wait_port "$seed_port"
}
stop_servers() { kill "$sb_pid" "$seed_pid" 2>/dev/null || true; wait "$sb_pid" "$seed_pid" 2>/dev/null || true; }

start_servers
out=$(mktemp)
sb_url="ws://127.0.0.1:$sb_port/ws" seed_url="ws://127.0.0.1:$seed_port/ws"
for i in $(seq "$runs"); do
  measure switchboard rust "$sb_pid" "$bin/switchboard-peer" load --proto seed --urls "$sb_url" --rooms "$rooms" --rounds "$rounds" --node-pid "$sb_pid" | tee -a "$out"
  measure seed rust "$seed_pid" "$bin/switchboard-peer" load --proto seed --urls "$seed_url" --rooms "$rooms" --rounds "$rounds" --node-pid "$seed_pid" | tee -a "$out"
  measure switchboard node "$sb_pid" node "$work/load/load.js" --proto seed --urls "$sb_url" --rooms "$rooms" --rounds "$rounds" | tee -a "$out"
  measure seed node "$seed_pid" node "$work/load/load.js" --proto seed --urls "$seed_url" --rooms "$rooms" --rounds "$rounds" | tee -a "$out"
done
for i in $(seq "$runs"); do
  measure switchboard rust-unloaded "$sb_pid" "$bin/switchboard-peer" load --proto seed --urls "$sb_url" --rooms 1 --rounds 2000 | tee -a "$out"
  measure seed rust-unloaded "$seed_pid" "$bin/switchboard-peer" load --proto seed --urls "$seed_url" --rooms 1 --rounds 2000 | tee -a "$out"
done
stop_servers

if [ "$idle" -gt 0 ]; then
  # Fresh servers so the figure is not flattered by memory freed from the load runs.
  start_servers
  emit switchboard idle "$("$bin/switchboard-peer" idle --url "ws://127.0.0.1:$sb_port/ws" --proto seed --sessions "$idle" --hold-secs 1 --node-pid "$sb_pid" --timeout-secs 180)" | tee -a "$out"
  emit seed idle "$("$bin/switchboard-peer" idle --url "ws://127.0.0.1:$seed_port/ws" --proto seed --sessions "$idle" --hold-secs 1 --node-pid "$seed_pid" --timeout-secs 180)" | tee -a "$out"
  stop_servers
fi

python3 - "$out" "$(nproc)" "$(free -g | awk '/Mem:/{print $2}')" "$workers" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(server, gen, key):
    xs = [r["result"][key] for r in rows if r["server"] == server and r["generator"] == gen and key in r["result"]]
    return statistics.median(xs) if xs else None
s = {"machine": f"{sys.argv[2]} cores, {sys.argv[3]} GiB", "node_workers": sys.argv[4]}
for gen in ("rust", "node"):
    sb, seed = med("switchboard", gen, "msgs_per_s"), med("seed", gen, "msgs_per_s")
    sbp, seedp = med("switchboard", gen, "p99_ms"), med("seed", gen, "p99_ms")
    sbc, seedc = med("switchboard", gen, "server_cpu_us_per_msg"), med("seed", gen, "server_cpu_us_per_msg")
    s[gen] = {"switchboard_msgs_per_s": sb, "seed_msgs_per_s": seed, "throughput_ratio": round(sb / seed, 2),
              "switchboard_cpu_us_per_msg": sbc, "seed_cpu_us_per_msg": seedc, "cpu_efficiency_ratio": round(seedc / sbc, 2),
              "switchboard_p99_ms": sbp, "seed_p99_ms": seedp, "p99_ratio": round(sbp / seedp, 3),
              "lost": sum(r["result"]["lost"] for r in rows if r["generator"] == gen)}
s["unloaded_p50_ms"] = {"switchboard": med("switchboard", "rust-unloaded", "p50_ms"), "seed": med("seed", "rust-unloaded", "p50_ms")}
idle = {r["server"]: r["result"].get("bytes_per_session") for r in rows if r["generator"] == "idle"}
if idle:
    s["idle_bytes_per_session"] = idle
print(json.dumps({"summary": s}))
PY
