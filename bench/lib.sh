# Shared by the bench scripts: ports, process CPU accounting, and one JSON line per measurement.
# Sourced, not run. Expects $root (the repository) to be set.
anchors=$root/../shared/bench
work=$root/target/bench
bin=$root/target/release

# Copies an anchor (or the Node generator) out of ../shared and installs its npm packages once.
install_anchor() {
  local d=$1
  if [ ! -d "$work/$d/node_modules" ]; then
    mkdir -p "$work/$d" && cp -r "$anchors/$d/." "$work/$d/"
    (cd "$work/$d" && npm install --silent --no-audit --no-fund >/dev/null)
  fi
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
emit() { echo "{\"server\":\"$1\",\"generator\":\"$2\",\"result\":$3}"; }
# CPU time (user+system, in clock ticks) the given processes have used so far.
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
# measure SERVER GENERATOR "PID[ PID...]" CMD...: runs a generator, adding the server
# processes' CPU per delivered message and the generator's own CPU use (% of one core: near 100
# means the generator, not the server, set the pace).
measure() {
  local server=$1 gen=$2 pids_=$3; shift 3
  local before after result tf
  tf=$(mktemp)
  # shellcheck disable=SC2086
  before=$(cpu_ticks $pids_); result=$(/usr/bin/time -f '%e %U %S' -o "$tf" "$@"); after=$(cpu_ticks $pids_)
  result=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); t=int(sys.argv[2]); hz=int(sys.argv[3]); e,u,s=map(float,open(sys.argv[4]).read().split()[-3:]); r["server_cpu_us_per_msg"]=round(t*1e6/hz/max(r["delivered"],1),2); r["generator_cpu_pct"]=round((u+s)*100/max(e,0.01)); print(json.dumps(r,separators=(",",":")))' "$result" "$((after - before))" "$(getconf CLK_TCK)" "$tf")
  rm -f "$tf"
  emit "$server" "$gen" "$result"
}
# two_nodes NAME BIN URL [NODE ARGS...]: two nodes of BIN/switchboard-node on the Redis at URL
# (--workers $workers, rate limits off), waited for until ready; sets NAME_nodes (their pids)
# and NAME_urls (their WebSocket URLs, for a generator's --urls).
two_nodes() {
  local name=$1 nb=$2 url=$3 a b nps=""; shift 3
  a=$(port); b=$(port)
  for p in "$a" "$b"; do
    "$nb/switchboard-node" --listen "127.0.0.1:$p" --node-id "$name-$p" --redis-url "$url" "$@" \
      --log warn --workers "$workers" "${unlimited[@]}" >/dev/null & pids+=($!); nps="$nps $!"
  done
  for p in "$a" "$b"; do wait_port "$p"; for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done; done
  curl -sf "http://127.0.0.1:$a/readyz" >/dev/null || { echo "$name: node not ready" >&2; exit 1; }
  eval "${name}_nodes=\"$nps\" ${name}_urls=\"ws://127.0.0.1:$a/ws,ws://127.0.0.1:$b/ws\""
}
unlimited=(--messages-per-sec 0 --candidates-per-sec 0 --descriptions-per-min 0 --max-candidates-per-negotiation 0)
