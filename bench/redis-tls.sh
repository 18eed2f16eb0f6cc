#!/usr/bin/env bash
# What TLS to Redis costs the cross-node path: the same two-node cluster on a plain Redis and on a
# TLS-only one (a throwaway CA from openssl, nodes on rediss:// with --redis-tls-ca-file), the
# same release binary, runs alternating, one generator. Prints each side's medians and their
# ratios: loaded cross-node throughput and p99, server CPU per message (the two nodes plus their
# Redis), unloaded cross-node p50.
# Usage: [WORKERS=n] bench/redis-tls.sh [ROOMS=200] [ROUNDS=50] [RUNS=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rooms=${1:-200} rounds=${2:-50} runs=${3:-3}
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
workers=${WORKERS:-1}

cargo build --quiet --release -p switchboard-node -p switchboard --features switchboard/peer
ca=$(mktemp -d)
(
  cd "$ca"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 -new "${ec[@]}" -keyout ca.key -out ca.pem -days 1 -subj /CN=bench-ca 2>/dev/null
  openssl req -new "${ec[@]}" -keyout server.key -out server.csr -subj /CN=server 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile server.ext 2>/dev/null
)

start_side() { # NAME TLS(0/1): a Redis and two nodes; sets NAME_pids, NAME_urls
  local name=$1 tls=$2 rp url args=()
  rp=$(port)
  if [ "$tls" = 1 ]; then
    redis-server --port 0 --tls-port "$rp" --tls-cert-file "$ca/server.pem" --tls-key-file "$ca/server.key" \
      --tls-ca-cert-file "$ca/ca.pem" --tls-auth-clients no --save '' --appendonly no >/dev/null & pids+=($!)
    url="rediss://127.0.0.1:$rp"; args=(--redis-tls-ca-file "$ca/ca.pem")
  else
    redis-server --port "$rp" --save '' --appendonly no >/dev/null & pids+=($!)
    url="redis://127.0.0.1:$rp"
  fi
  local ps="$!"
  wait_port "$rp"
  two_nodes "$name" "$bin" "$url" "${args[@]}"
  local nodes=${name}_nodes
  eval "${name}_pids=\"$ps ${!nodes}\""
}
start_side plain 0
start_side tls 1

out=$(mktemp)
gen=("$bin/switchboard-peer" load --proto seed)
for i in $(seq "$runs"); do
  for side in plain tls; do
    p=${side}_pids u=${side}_urls
    measure "$side" loaded-cross "${!p}" "${gen[@]}" --urls "${!u}" --rooms "$rooms" --rounds "$rounds" | tee -a "$out"
    measure "$side" unloaded-cross "${!p}" "${gen[@]}" --urls "${!u}" --rooms 1 --rounds 2000 | tee -a "$out"
  done
done

PYTHONPATH="$root/bench" python3 - "$out" "$(nproc)" "$(free -g | awk '/Mem:/{print $2}')" <<'PY'
import json, sys
from summary import load
rows, med, s = load(sys.argv)
for gen, key in [("loaded-cross", "msgs_per_s"), ("loaded-cross", "p99_ms"), ("loaded-cross", "server_cpu_us_per_msg"),
                 ("unloaded-cross", "p50_ms")]:
    b, h = med("plain", gen, key), med("tls", gen, key)
    s[f"{gen} {key}"] = {"plain": b, "tls": h, "tls/plain": round(h / b, 3) if b and h else None}
s["lost"] = {side: sum(r["result"].get("lost", 0) for r in rows if r["server"] == side) for side in ("plain", "tls")}
print(json.dumps({"summary": s}, indent=1))
PY
rm -rf "$ca"
