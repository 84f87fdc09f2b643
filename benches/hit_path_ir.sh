#!/usr/bin/env bash
# The hit path of two frontdoor builds in instructions per request, counted by Valgrind
# (cachegrind, no cache simulation): a figure that does not move with whatever else the machine
# runs, beside benches/hit_path.sh's CPU time. Same cases: an asset-cache hit and an edge-cache
# hit of the simulator's 8 KB turbolinks bundle, Brotli-encoded for Chrome's Accept-Encoding,
# over HTTP/1.1+TLS and h2 (h2load, 4 connections, one stream each, so both protocols do one
# request at a time per connection).
#
#   BEFORE=/tmp/fd-before/target/release/frontdoor AFTER=target/release/frontdoor \
#     bash benches/hit_path_ir.sh          # 3 repeats, medians (REPEATS)
#
# Each measurement runs frontdoor under cachegrind twice, with 1,000 and with 5,000 hits after
# the same warm-up (the fill and the wait for the Brotli variant): the difference over 4,000 is
# the instructions of one hit, start-up, TLS handshakes and compression cancelled out. Only
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BEFORE:?the before build's binary}" "${AFTER:?the after build's binary}"
repeats=${REPEATS:-3}
bash .ci/setup valgrind:valgrind nghttp2-client:h2load curl:curl
source benches/common.sh
chrome="gzip, deflate, br, zstd"

sim=$(free_port)
"$AFTER" simulate --listen "127.0.0.1:$sim" --workers 4 --service-ms 0 >/dev/null & pids+=($!)
"$AFTER" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
wait_port "$sim"
asset=$(curl -s "http://127.0.0.1:$sim/" | grep -o '/assets/turbolinks-[0-9a-f]*\.js' | head -1)
[ -n "$asset" ] || { echo "no turbolinks bundle on the simulator's home page" >&2; exit 1; }

# instructions BINARY KIND PROTO HITS: total instructions of one frontdoor run that serves
# HITS hits after the warm-up.
instructions() {
  local https admin pid proto_flag=""
  https=$(free_port); admin=$(free_port)
  hit_config "$https" "$admin" "$sim" "$2" > "$tmp/fd.toml"
  RUST_LOG=warn valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    --log-file="$tmp/vg.log" "$1" run "$tmp/fd.toml" 2>/dev/null &
  pid=$!
  wait_port "$https"
  wait_br "https://127.0.0.1:$https$asset" || exit 1
  [ "$3" = h1 ] && proto_flag="--h1"
  h2load $proto_flag -n "$4" -c 4 -m 1 -H "accept-encoding: $chrome" "https://127.0.0.1:$https$asset" \
    >"$tmp/h2load.out" 2>&1
  grep -q "$4 succeeded, 0 failed" "$tmp/h2load.out" || { cat "$tmp/h2load.out" >&2; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || true
  awk '/I *refs:/ {gsub(",", "", $NF); print $NF}' "$tmp/vg.log"
}

cases="assets_h1 assets_h2 cache_h1 cache_h2"
for repeat in $(seq "$repeats"); do
  for case in $cases; do
    for build in before after; do
      bin=$BEFORE; [ "$build" = after ] && bin=$AFTER
      few=$(instructions "$bin" "${case%_*}" "${case#*_}" 1000)
      many=$(instructions "$bin" "${case%_*}" "${case#*_}" 5000)
      per=$(( (many - few) / 4000 ))
      echo "repeat $repeat $case $build: $per instructions per hit" >&2
      record "${build}_$case" "$per"
    done
  done
done

echo
echo "hit path in instructions per request (cachegrind): $asset, served br, $repeats repeat(s), medians"
printf "%-12s %10s %10s %7s\n" case before after ratio
for case in $cases; do
  b=$(median <<<"${results[before_$case]}"); a=$(median <<<"${results[after_$case]}")
  printf "%-12s %10s %10s %7s\n" "$case" "$b" "$a" "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", a / b}')"
done
