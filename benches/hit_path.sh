#!/usr/bin/env bash
# Two frontdoor builds compared on the paths that answer from memory: an asset-cache hit and an
# edge-cache hit of the same 8 KB script (the simulator's smallest vendor bundle, Brotli-encoded
# for Chrome's Accept-Encoding), over HTTP/1.1+TLS (wrk, 16 connections) and h2 (h2load, 16
# connections x 4 streams). Prints each build's CPU per 1,000 requests, requests/s and p99,
# medians of the rounds, and after ÷ before.
#
#   BEFORE=/tmp/fd-before/target/release/frontdoor AFTER=target/release/frontdoor \
#     bash benches/hit_path.sh            # 3 rounds of 10 s per build and case (ROUNDS, SECS)
#   ROUNDS=1 SECS=3 ... bash benches/hit_path.sh   # a quick look
#   CASES="cache_h1 cache_h2" ... bash benches/hit_path.sh   # some of the four cases
#
# Each round runs every case on both builds back to back (alternating which goes first), so
# that a busy neighbour slows both alike. frontdoor runs on core 0 with one thread; the load
# generator and the simulator on core 1. CPU per request is the figure to read on a shared
# machine: requests/s and latency also move with whatever else core 0 runs. Only 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BEFORE:?the before build's binary}" "${AFTER:?the after build's binary}"
rounds=${ROUNDS:-3}; secs=${SECS:-10}
bash .ci/setup wrk:wrk nghttp2-client:h2load util-linux:taskset curl:curl
source benches/common.sh
chrome="gzip, deflate, br, zstd"

sim=$(free_port)
taskset -c 1 "$AFTER" simulate --listen "127.0.0.1:$sim" --workers 16 --service-ms 0 >/dev/null & pids+=($!)
"$AFTER" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
wait_port "$sim"
asset=$(curl -s "http://127.0.0.1:$sim/" | grep -o '/assets/turbolinks-[0-9a-f]*\.js' | head -1)
[ -n "$asset" ] || { echo "no turbolinks bundle on the simulator's home page" >&2; exit 1; }

# start NAME BINARY KIND: frontdoor on core 0 with /assets/... as an asset route (KIND=assets)
# or an edge-cache route (KIND=cache: the app's `public, max-age=3600` makes the file
# storable); sets port_NAME and pid_NAME once its listener accepts.
start() {
  local https admin
  https=$(free_port); admin=$(free_port)
  hit_config "$https" "$admin" "$sim" "$3" > "$tmp/$1.toml"
  RUST_LOG=warn taskset -c 0 "$2" run "$tmp/$1.toml" 2>"$tmp/$1.err" &
  pids+=($!)
  printf -v "pid_$1" '%s' "$!"
  printf -v "port_$1" '%s' "$https"
  wait_port "$https"
}

# warm NAME: the first request fills; then until the Brotli variant is served from memory.
warm() { local port="port_$1"; wait_br "https://127.0.0.1:${!port}$asset" || exit 1; }

for build in before after; do
  bin=$BEFORE; [ "$build" = after ] && bin=$AFTER
  for kind in assets cache; do
    start "${build}_$kind" "$bin" "$kind"
    warm "${build}_$kind"
  done
done

# h1 URL PID -> cpu/1k rps p99
h1() {
  local before after out reqs
  before=$(cpu_ticks "$2")
  out=$(taskset -c 1 wrk -t1 -c16 -d"${secs}s" --latency -H "accept-encoding: $chrome" "$1")
  after=$(cpu_ticks "$2")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then echo "$3: $(grep "Non-2xx\|Socket errors" <<<"$out")" >&2; fi
  echo "$(cpu_per_1k $((after - before)) "$reqs") $(awk '/Requests\/sec/ {print $2}' <<<"$out") $(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")"
}
# h2 URL PID -> cpu/1k rps p99
h2() {
  local before after out reqs
  before=$(cpu_ticks "$2")
  out=$(taskset -c 1 h2load -c16 -m4 -D "$secs" -H "accept-encoding: $chrome" --log-file="$tmp/h2.log" "$1" 2>&1)
  after=$(cpu_ticks "$2")
  reqs=$(awk '/^requests:/ {print $8}' <<<"$out")
  grep -q "0 failed, 0 errored" <<<"$out" || { echo "h2load reported failures:" >&2; grep "^requests:" <<<"$out" >&2; }
  echo "$(cpu_per_1k $((after - before)) "$reqs") $(awk '/^finished in/ {print $4}' <<<"$out") $(h2_percentiles "$tmp/h2.log" | col 2)"
}

cases=${CASES:-assets_h1 assets_h2 cache_h1 cache_h2}
for round in $(seq "$rounds"); do
  echo "round $round/$rounds ..." >&2
  # Odd rounds run the before build first, even rounds the after build: neither always
  # follows the other.
  order="before after"; [ $((round % 2)) -eq 0 ] && order="after before"
  for case in $cases; do
    for build in $order; do
      name="${build}_${case%_*}"; port="port_$name"; pid="pid_$name"
      record "${build}_$case" "$(${case#*_} "https://127.0.0.1:${!port}$asset" "${!pid}" "${build}_$case")"
    done
  done
done

echo
echo "hit path: $asset ($(curl -s "http://127.0.0.1:$sim$asset" | wc -c) bytes identity, served br), $rounds round(s) of ${secs}s, medians"
printf "%-22s %14s %14s %7s   %11s %11s   %9s %9s\n" case "CPU ms/1k bef" "CPU ms/1k aft" "ratio" "req/s bef" "req/s aft" "p99 bef" "p99 aft"
for case in $cases; do
  b=${results[before_$case]}; a=${results[after_$case]}
  cb=$(col 1 <<<"$b" | median); ca=$(col 1 <<<"$a" | median)
  printf "%-22s %14s %14s %7s   %11s %11s   %9s %9s\n" "$case" "$cb" "$ca" \
    "$(awk -v a="$ca" -v b="$cb" 'BEGIN {printf "%.2f", a / b}')" \
    "$(col 2 <<<"$b" | median)" "$(col 2 <<<"$a" | median)" "$(col 3 <<<"$b" | median)" "$(col 3 <<<"$a" | median)"
done
echo "per-round CPU ms/1k (before after):"
for case in $cases; do
  echo "  $case: $(paste -d' ' <(col 1 <<<"${results[before_$case]}" | grep .) <(col 1 <<<"${results[after_$case]}" | grep .) | tr '\n' ';')"
done
