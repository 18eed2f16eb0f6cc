#!/usr/bin/env bash
# Latency fairness under saturation: one node with --workers 2 pinned to one core set, the Rust
# generator (closed loop, seed protocol) pinned to the other, offered concurrency (rooms) raised
# until throughput stops growing. Prints one JSON line per step, then the curve as a table.
# Usage: [NODE_CPUS=0] [GEN_CPUS=1] [THREADS=1] [WORKERS=2] [PROTO=seed] [NODE=path]
#        bench/fairness.sh [ROUNDS=60] [RUNS=3] [ROOMS="1 5 10 25 50 100 200 400 800"]
# NODE picks another switchboard-node binary (e.g. a build of the previous commit), so a before
# and an after can run back to back on the same machine state.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-60} runs=${2:-3} steps=${3:-"1 5 10 25 50 100 200 400 800"}
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

node_cpus=${NODE_CPUS:-0} gen_cpus=${GEN_CPUS:-1} threads=${THREADS:-1} workers=${WORKERS:-2}
proto=${PROTO:-seed}
cargo build --quiet --release -p switchboard-node -p switchboard --features switchboard/peer
node_bin=${NODE:-$bin/switchboard-node}
path=/ws
[ "$proto" = v1 ] && path=/v1/ws

sb_port=$(port)
taskset -c "$node_cpus" "$node_bin" --listen "127.0.0.1:$sb_port" --log warn \
  --workers "$workers" "${unlimited[@]}" --max-connections 100000 >/dev/null &
sb_pid=$!; pids+=($sb_pid)
wait_port "$sb_port"

out=$(mktemp)
for rooms in $steps; do
  for _ in $(seq "$runs"); do
    measure switchboard "rooms=$rooms" "$sb_pid" taskset -c "$gen_cpus" "$bin/switchboard-peer" --threads "$threads" \
      load --signal-only --proto "$proto" --urls "ws://127.0.0.1:$sb_port$path" --rooms "$rooms" --rounds "$rounds" \
      --node-pid "$sb_pid" | tee -a "$out"
  done
done

python3 - "$out" "$(nproc --all)" "$(free -g | awk '/Mem:/{print $2}')" "$node_cpus" "$gen_cpus" "$threads" "$workers" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = []
for r in rows:
    if r["generator"] not in steps:
        steps.append(r["generator"])
def med(step, key):
    return statistics.median(r["result"][key] for r in rows if r["generator"] == step)
print(f"machine: {sys.argv[2]} cores, {sys.argv[3]} GiB; node on cpus {sys.argv[4]} (--workers {sys.argv[7]}), "
      f"generator on cpus {sys.argv[5]} (--threads {sys.argv[6]}); medians of each step's runs")
print("| rooms | msg/s | p50 ms | p99 ms | **p99/p50** | node CPU µs/msg | generator CPU % | lost |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
best = max(med(s, "msgs_per_s") for s in steps)
for s in steps:
    p50, p99 = med(s, "p50_ms"), med(s, "p99_ms")
    sat = " (saturated)" if med(s, "msgs_per_s") >= 0.95 * best else ""
    lost = sum(r["result"]["lost"] for r in rows if r["generator"] == s)
    print(f"| {s.split('=')[1]}{sat} | {med(s, 'msgs_per_s'):,.0f} | {p50:.3f} | {p99:.3f} | **{p99 / max(p50, 1e-9):.2f}** | "
          f"{med(s, 'server_cpu_us_per_msg'):.2f} | {med(s, 'generator_cpu_pct'):.0f} | {lost} |")
PY
