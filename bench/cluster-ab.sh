#!/usr/bin/env bash
# A/B of the cross-node path: the same two-node cluster run with the node binary of git ref
# BASE (default: origin of this change, HEAD~1) and with the working tree's, each with its own
# Redis, runs alternating, one generator (this tree's switchboard-peer). Prints each side's
# medians and their ratios: loaded cross-node throughput, unloaded same-node and cross-node p50,
# server CPU per message (the two nodes plus their Redis).
# Usage: [BASE=<git ref>] [WORKERS=n] bench/cluster-ab.sh [ROOMS=200] [ROUNDS=50] [RUNS=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rooms=${1:-200} rounds=${2:-50} runs=${3:-3}
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
base_ref=${BASE:-HEAD~1}
workers=${WORKERS:-1}

cargo build --quiet --release -p switchboard-node -p switchboard --features switchboard/peer
base_src=$root/target/ab-base-src
rm -rf "$base_src" && mkdir -p "$base_src"
git -C "$root" archive "$base_ref" | tar -x -C "$base_src"
CARGO_TARGET_DIR=$root/target/ab-base cargo build --quiet --release --manifest-path "$base_src/Cargo.toml" -p switchboard-node
base_bin=$root/target/ab-base/release

redis() { redis-server --port "$1" --save '' --appendonly no >/dev/null & pids+=($!); }
start_side() { # NAME BIN: a Redis and two nodes; sets NAME_pids and NAME_urls, NAME_a
  local name=$1 nb=$2 rp a b
  rp=$(port); redis "$rp"; local rpid=$!
  a=$(port); b=$(port); wait_port "$rp"
  local ps="$rpid"
  for p in "$a" "$b"; do
    "$nb/switchboard-node" --listen "127.0.0.1:$p" --node-id "$name-$p" --redis-url "redis://127.0.0.1:$rp" \
      --log warn --workers "$workers" "${unlimited[@]}" >/dev/null & pids+=($!); ps="$ps $!"
  done
  for p in "$a" "$b"; do wait_port "$p"; for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done; done
  eval "${name}_pids=\"$ps\" ${name}_urls=\"ws://127.0.0.1:$a/ws,ws://127.0.0.1:$b/ws\" ${name}_a=\"ws://127.0.0.1:$a/ws\""
}
start_side base "$base_bin"
start_side head "$bin"

out=$(mktemp)
gen=("$bin/switchboard-peer" load --proto seed)
for i in $(seq "$runs"); do
  for side in base head; do
    p=${side}_pids u=${side}_urls a=${side}_a
    measure "$side" loaded-cross "${!p}" "${gen[@]}" --urls "${!u}" --rooms "$rooms" --rounds "$rounds" | tee -a "$out"
    measure "$side" unloaded-same "${!p}" "${gen[@]}" --urls "${!a}" --rooms 1 --rounds 2000 | tee -a "$out"
    measure "$side" unloaded-cross "${!p}" "${gen[@]}" --urls "${!u}" --rooms 1 --rounds 2000 | tee -a "$out"
  done
done

python3 - "$out" "$(nproc)" "$(free -g | awk '/Mem:/{print $2}')" "$base_ref" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(side, gen, key):
    xs = [r["result"][key] for r in rows if r["server"] == side and r["generator"] == gen and key in r["result"]]
    return statistics.median(xs) if xs else None
s = {"machine": f"{sys.argv[2]} cores, {sys.argv[3]} GiB", "base": sys.argv[4]}
for gen, key in [("loaded-cross", "msgs_per_s"), ("loaded-cross", "p99_ms"), ("loaded-cross", "server_cpu_us_per_msg"),
                 ("unloaded-same", "p50_ms"), ("unloaded-cross", "p50_ms")]:
    b, h = med("base", gen, key), med("head", gen, key)
    s[f"{gen} {key}"] = {"base": b, "head": h, "head/base": round(h / b, 3) if b and h else None}
s["lost"] = {side: sum(r["result"].get("lost", 0) for r in rows if r["server"] == side) for side in ("base", "head")}
print(json.dumps({"summary": s}, indent=1))
PY
