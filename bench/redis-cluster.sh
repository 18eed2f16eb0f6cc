#!/usr/bin/env bash
# Sizing Redis Cluster shards: the same two-node Switchboard cluster, the same release binary and
# generator, on three Redis setups side by side, runs alternating:
#   single    one redis-server, redis:// (one bucket: the one-Redis key space)
#   shards-1  a Redis Cluster of one master holding every slot, redis+cluster:// (6 buckets: the default)
#   shards-3  a Redis Cluster of three masters, redis+cluster:// (6 buckets, 2 per master)
# Prints each side's medians: loaded cross-node throughput and p99, server CPU per message (the
# two nodes plus every redis-server), Redis CPU per message (the redis-servers alone), the
# busiest shard's share of that, and unloaded cross-node p50.
# Usage: [WORKERS=n] [BUCKETS=n] bench/redis-cluster.sh [ROOMS=200] [ROUNDS=50] [RUNS=3]
# (BUCKETS: --redis-buckets on the cluster sides, default the node's 12.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rooms=${1:-200} rounds=${2:-50} runs=${3:-3}
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
workers=${WORKERS:-1}
buckets=()
[ -n "${BUCKETS:-}" ] && buckets=(--redis-buckets "$BUCKETS")

cargo build --quiet --release -p switchboard-node -p switchboard --features switchboard/peer
dir=$(mktemp -d)

redis() { # PORT [ARGS...]: a redis-server in its own directory; prints nothing, adds its pid
  local p=$1; shift
  mkdir -p "$dir/$p"
  (cd "$dir/$p" && exec redis-server --port "$p" --save '' --appendonly no "$@" >/dev/null) & pids+=($!)
  wait_port "$p"
}

start_side() { # NAME SHARDS(0 = no cluster): sets NAME_nodes, NAME_redis (pids), NAME_urls
  local name=$1 shards=$2 url ports=() rps="" extra=()
  if [ "$shards" = 0 ]; then
    ports=("$(port)"); redis "${ports[0]}"; rps=$!
    url="redis://127.0.0.1:${ports[0]}"
  else
    for _ in $(seq "$shards"); do
      local p; p=$(port); ports+=("$p")
      redis "$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "$(port)"; rps="$rps $!"
    done
    if [ "$shards" = 1 ]; then
      redis-cli -p "${ports[0]}" CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
    else
      local addrs=(); for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
      redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
    fi
    for p in "${ports[@]}"; do
      for _ in $(seq 100); do redis-cli -p "$p" CLUSTER INFO | grep -q cluster_state:ok && break; sleep 0.1; done
    done
    url="redis+cluster://127.0.0.1:${ports[0]}"
    extra=("${buckets[@]}")
  fi
  two_nodes "$name" "$bin" "$url" "${extra[@]}"
  eval "${name}_redis=\"$rps\""
}
start_side single 0
start_side shards1 1
start_side shards3 3

out=$(mktemp)
gen=("$bin/switchboard-peer" load --proto seed)
for i in $(seq "$runs"); do
  for side in single shards1 shards3; do
    n=${side}_nodes r=${side}_redis u=${side}_urls
    for load in loaded-cross unloaded-cross; do
      if [ "$load" = loaded-cross ]; then args=(--rooms "$rooms" --rounds "$rounds"); else args=(--rooms 1 --rounds 2000); fi
      # Each redis-server's CPU ticks around the run, beside measure's total.
      # shellcheck disable=SC2086
      before=$(for p in ${!r}; do cpu_ticks "$p"; done | paste -sd,)
      # shellcheck disable=SC2086
      line=$(measure "$side" "$load" "${!n} ${!r}" "${gen[@]}" --urls "${!u}" "${args[@]}")
      # shellcheck disable=SC2086
      after=$(for p in ${!r}; do cpu_ticks "$p"; done | paste -sd,)
      python3 - "$line" "$before" "$after" "$(getconf CLK_TCK)" <<'PY' | tee -a "$out"
import json, sys
row = json.loads(sys.argv[1]); hz = int(sys.argv[4])
used = [int(a) - int(b) for a, b in zip(sys.argv[3].split(","), sys.argv[2].split(","))]
r = row["result"]; n = max(r["delivered"], 1)
r["redis_cpu_us_per_msg"] = round(sum(used) * 1e6 / hz / n, 2)
r["busiest_shard_share"] = round(max(used) / max(sum(used), 1), 2)
print(json.dumps(row, separators=(",", ":")))
PY
    done
  done
done

PYTHONPATH="$root/bench" python3 - "$out" "$(nproc)" "$(free -g | awk '/Mem:/{print $2}')" <<'PY'
import json, sys
from summary import load
rows, med, s = load(sys.argv)
for gen, key in [("loaded-cross", "msgs_per_s"), ("loaded-cross", "p99_ms"), ("loaded-cross", "server_cpu_us_per_msg"),
                 ("loaded-cross", "redis_cpu_us_per_msg"), ("loaded-cross", "busiest_shard_share"),
                 ("unloaded-cross", "p50_ms")]:
    v = {side: med(side, gen, key) for side in ("single", "shards1", "shards3")}
    if v["shards1"] and v["shards3"]:
        v["shards3/shards1"] = round(v["shards3"] / v["shards1"], 3)
    if v["single"] and v["shards1"]:
        v["shards1/single"] = round(v["shards1"] / v["single"], 3)
    s[f"{gen} {key}"] = v
s["lost"] = {side: sum(r["result"].get("lost", 0) for r in rows if r["server"] == side) for side in ("single", "shards1", "shards3")}
print(json.dumps({"summary": s}, indent=1))
PY
rm -rf "$dir"
