#!/usr/bin/env bash
# Balancing across app nodes (issue 7): three simulator app nodes of 4 workers × 25 ms
# (160 req/s each), behind frontdoor (least-busy, 4 admission slots per backend) and behind
# HAProxy (leastconn, `maxconn 4` per server: the same per-backend limit, queued in the
# balancer), one after the other in the same run, each balancer alone on core 0 over
# HTTPS/1.1; the load generator and the simulators on core 1.
#
# - Scaling: the same closed-loop load (wrk, 24 connections: twice the workers of three app
#   nodes) against 1, 2 and 3 app nodes: requests/s should follow app capacity (160, 320,
#   480 req/s), p50/p99 and the balancer's CPU per 1,000 requests beside it.
# - Latency below capacity: an open-loop load (benches/overload.rs) at 80% of three nodes'
#   capacity (384 req/s), p50/p99 from the intended start of each request.
#
# frontdoor's shedding is set out of the way (target 1 s): this measures balancing and
# queueing, as HAProxy does them; benches/overload.sh measures shedding.
#
#   bash benches/multinode.sh            # 3 rounds of 10 s runs, medians (about 6 minutes)
#   bash benches/multinode.sh --quick    # 1 round of 4 s runs
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3; secs=10
if [ "${1:-}" = "--quick" ]; then rounds=1; secs=4; fi
conns=24
rate=384

bash .ci/setup util-linux:taskset haproxy:haproxy wrk:wrk jq:jq
cargo build --release --locked --quiet
cargo bench --locked --bench overload --no-run --quiet 2>/dev/null
gen=$(ls -t target/release/deps/overload-* | grep -v '\.d$' | head -1)
bin="${CARGO_TARGET_DIR:-target}/release/frontdoor"
source benches/common.sh

apps=("$(free_port)" "$(free_port)" "$(free_port)")
for port in "${apps[@]}"; do
  taskset -c 1 "$bin" simulate --listen "127.0.0.1:$port" --workers 4 --service-ms 25 >/dev/null 2>&1 &
  pids+=($!)
done
for port in "${apps[@]}"; do wait_port "$port"; done
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/haproxy.pem"
page=/courses/mit/physics

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# start_frontdoor N: frontdoor on core 0 in front of the first N app nodes; sets fd_pid, fd.
start_frontdoor() {
  local backends="" port
  for port in "${apps[@]:0:$1}"; do backends+="\"127.0.0.1:$port\", "; done
  fd=$(free_port); local admin; admin=$(free_port)
  { fd_head 1 "$fd" "$admin"; cat <<TOML
[pools.app]
backends = [${backends%, }]
balance = "least-busy"
[pools.app.admission]
slots = 4
target = "1s"
queue-timeout = "5s"
[[routes]]
name = "app"
path = "/{rest*}"
pool = "app"
TOML
  } >"$tmp/fd.toml"
  RUST_LOG=warn taskset -c 0 "$bin" run "$tmp/fd.toml" 2>"$tmp/fd.err" &
  fd_pid=$!; pids+=($fd_pid)
  wait_port "$fd"
}

# start_haproxy N: HAProxy (one thread) on core 0 in front of the first N app nodes.
start_haproxy() {
  local i=0 port
  hap=$(free_port)
  cat >"$tmp/haproxy.cfg" <<CFG
global
  maxconn 8000
  nbthread 1
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  timeout queue 5s
frontend fe
  bind 127.0.0.1:$hap ssl crt $tmp/haproxy.pem alpn http/1.1
  default_backend app
backend app
  balance leastconn
  http-reuse always
CFG
  for port in "${apps[@]:0:$1}"; do
    i=$((i + 1)); echo "  server app$i 127.0.0.1:$port maxconn 4" >>"$tmp/haproxy.cfg"
  done
  taskset -c 0 haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.err" 2>&1 &
  hap_pid=$!; pids+=($hap_pid)
  wait_port "$hap"
}

# open_loop URL: "p50_ms p99_ms goodput_per_s non-2xx" of the open-loop run.
open_loop() {
  local out
  out=$(taskset -c 1 "$gen" "$1" "$rate" "$secs" "$page" "$page" /healthz)
  jq -r '"\(.ok_p50_ms) \(.ok_p99_ms) \(.goodput_per_s) \(.shed + .other + .errors)"' <<<"$out"
}

for round in $(seq "$rounds"); do
  echo "round $round/$rounds ..." >&2
  for n in 1 2 3; do
    start_frontdoor "$n"
    record "fd_$n" "$(run_wrk "https://127.0.0.1:$fd$page" "$conns" "$fd_pid")"
    [ "$n" = 3 ] && record fd_open "$(open_loop "https://127.0.0.1:$fd")"
    stop "$fd_pid"
    start_haproxy "$n"
    record "hap_$n" "$(run_wrk "https://127.0.0.1:$hap$page" "$conns" "$hap_pid")"
    [ "$n" = 3 ] && record hap_open "$(open_loop "https://127.0.0.1:$hap")"
    stop "$hap_pid"
  done
done

medians() { # NAME: the median of each of its columns
  local rows=${results[$1]} c out=""
  for c in $(seq "$(head -1 <<<"$rows" | wc -w)"); do out+="$(col "$c" <<<"$rows" | median) "; done
  echo "${out% }"
}
echo
echo "multi-node benchmark: $rounds round(s) of ${secs}s, medians; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "app nodes: 4 workers x 25 ms each (160 req/s); closed loop: wrk, $conns connections, GET $page"
printf "%-10s %-9s %9s %9s %9s %14s\n" "app nodes" balancer "req/s" "p50 ms" "p99 ms" "CPU ms/1k req"
for n in 1 2 3; do
  for b in fd hap; do
    read -r rps p50 p99 cpu <<<"$(medians "${b}_$n")"
    printf "%-10s %-9s %9s %9s %9s %14s\n" "$n" "$([ $b = fd ] && echo frontdoor || echo haproxy)" "$rps" "$p50" "$p99" "$cpu"
  done
done
echo "open loop at $rate req/s (80% of three nodes), three app nodes:"
for b in fd hap; do
  read -r p50 p99 goodput failed <<<"$(medians "${b}_open")"
  printf "  %-9s p50 %6s ms  p99 %6s ms  goodput %6s req/s  non-2xx/errors %s\n" \
    "$([ $b = fd ] && echo frontdoor || echo haproxy)" "$p50" "$p99" "$goodput" "$failed"
done
