#!/usr/bin/env bash
# Profiles frontdoor's proxied page path (issue 16): the page of benches/compare.sh (8.8 KB of
# HTML from an nginx origin, learned hints on, no compression) through frontdoor built with the
# `profiling` Cargo profile (release optimisation, thin-local LTO, debug info), pinned on
# core 0 with the load and the origin on core 1.
#
#   bash benches/profile.sh [--h1] [--secs N] [--out DIR]   # perf: top entries + flame graph
#   bash benches/profile.sh --callgrind [--h1] [--requests N] [--out DIR]
#   ... --bin PATH   # profile this binary (a copy of an earlier profiling build) instead
#
# perf mode: `perf record` (cpu-clock samples, DWARF call graphs) of the frontdoor process
# while h2load (h2, 32 x 10) or wrk (HTTP/1.1 + TLS, 32 connections) runs N seconds (default
# 10); prints the top entries by self time and writes DIR/flame.svg with inferno (install it
# with `cargo install inferno --root SOMEWHERE` and put SOMEWHERE/bin on PATH; nothing of it is
# committed). callgrind mode: frontdoor under `valgrind --tool=callgrind`, counters zeroed
# after a warm-up, then exactly N requests (default 2,000; h2load -n over 4 connections);
# prints instructions per request and the top functions by instructions (self). Instruction
# counts do not depend on what else runs on the machine, so they compare across runs.
set -euo pipefail
cd "$(dirname "$0")/.."

h1=0; secs=10; requests=2000; mode=perf; out=target/profile; bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$(realpath "$2"); shift ;;
    --h1) h1=1 ;;
    --secs) secs=$2; shift ;;
    --requests) requests=$2; shift ;;
    --callgrind) mode=callgrind ;;
    --out) out=$2; shift ;;
    *) echo "usage: $0 [--callgrind] [--h1] [--secs N] [--requests N] [--out DIR] [--bin PATH]" >&2; exit 2 ;;
  esac
  shift
done

bash .ci/setup wrk:wrk nghttp2-client:h2load util-linux:taskset nginx-light:nginx linux-perf:perf valgrind:valgrind
if [ -z "$bin" ]; then
  cargo build --profile profiling --locked --quiet --bin frontdoor
  bin="${CARGO_TARGET_DIR:-target}/profiling/frontdoor"
fi
source benches/common.sh
mkdir -p "$out"; out=$(realpath "$out")

origin=$(free_port); fd=$(free_port); admin=$(free_port)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
start_page_origin "$origin"
{ fd_head 1 "$fd" "$admin"; cat <<TOML
[pools.origin]
backends = ["127.0.0.1:$origin"]
[[routes]]
name = "pages"
path = "/{rest*}"
pool = "origin"
TOML
} > "$tmp/fd.toml"
url="https://127.0.0.1:$fd$page"
wrapper=()
[ "$mode" = callgrind ] && wrapper=(valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out.%p" --dump-instr=no)
RUST_LOG=warn taskset -c 0 "${wrapper[@]}" "$bin" run "$tmp/fd.toml" >/dev/null 2>"$tmp/fd.err" & fd_pid=$!; pids+=($fd_pid)
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$fd") 2>/dev/null && break; sleep 0.1; done
wait_port "$fd"
# Warm: connections, the learned hints (the first page is parsed), allocator arenas.
curl -sk -o /dev/null "$url"
links=$(curl -sk -o /dev/null -D - "$url" | tr -d '\r' | grep -ci '^link:.*rel=preload' || true)
echo "frontdoor serves the page with a Link header: $links" >&2
taskset -c 1 h2load -c4 -m10 -n 400 "$url" >/dev/null

load() { # SECONDS-or-empty REQUESTS-or-empty
  if [ "$h1" = 1 ]; then
    if [ -n "$1" ]; then taskset -c 1 wrk -t1 -c32 -d"$1s" "$url" >/dev/null
    else taskset -c 1 h2load --h1 -c4 -n "$2" "$url" | grep '^requests:' >&2; fi
  else
    if [ -n "$1" ]; then taskset -c 1 h2load -c32 -m10 -D "$1" "$url" >/dev/null
    else taskset -c 1 h2load -c4 -m10 -n "$2" "$url" | grep '^requests:' >&2; fi
  fi
}
proto=$([ "$h1" = 1 ] && echo "HTTP/1.1+TLS" || echo h2)

if [ "$mode" = perf ]; then
  perf record -e cpu-clock -F 999 --call-graph dwarf,32768 -o "$out/perf.data" -p "$fd_pid" -- sleep "$secs" 2>/dev/null &
  perf_pid=$!
  load "$secs" ""
  wait "$perf_pid" || true
  echo "perf, $proto, ${secs}s: top entries by self time (share of frontdoor's samples)"
  perf report -i "$out/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40
  if command -v inferno-collapse-perf >/dev/null; then
    perf script -i "$out/perf.data" 2>/dev/null | inferno-collapse-perf > "$out/stacks.folded"
    inferno-flamegraph --title "frontdoor, page over $proto" < "$out/stacks.folded" > "$out/flame.svg"
    echo "flame graph: $out/flame.svg (folded stacks: $out/stacks.folded)"
  else
    echo "inferno not on PATH: no flame graph" >&2
  fi
else
  callgrind_control -z "$fd_pid" >/dev/null
  load "" "$requests"
  callgrind_control -d "$fd_pid" >/dev/null
  sleep 1
  dump=$(ls -t "$out"/callgrind.out.* | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  echo "callgrind, $proto, $requests requests: $(awk -v t="$total" -v n="$requests" 'BEGIN {printf "%.0f", t / n}') instructions per request (all of frontdoor's threads)"
  callgrind_annotate --inclusive=no "$dump" 2>/dev/null | sed -n '/^Ir/,$p' | head -45
  echo "dump: $dump"
fi
