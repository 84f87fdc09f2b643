#!/usr/bin/env bash
# The HTTP/2 abuse run (issue 8): frontdoor's CPU time during each attack of
# benches/h2abuse.rs (rapid reset, PING, SETTINGS and CONTINUATION floods) against a normal
# load of the same duration, with a probe client fetching every 20 ms on its own connection.
# frontdoor runs one worker thread on core 0; the simulator and the load on core 1. CPU is
# user + system time from /proc/PID/stat. Prints one line per mode.
#
#   bash benches/h2abuse.sh            # 10 s per mode, release build
#   bash benches/h2abuse.sh --quick    # 3 s per mode
#   bash benches/h2abuse.sh --debug    # debug build (figures not comparable with release)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=10; profile=release
for arg in "$@"; do
  case "$arg" in
    --quick) secs=3 ;;
    --debug) profile=debug ;;
    *) echo "usage: $0 [--quick] [--debug]" >&2; exit 2 ;;
  esac
done

bash .ci/setup util-linux:taskset jq:jq
if [ "$profile" = release ]; then cargo build --release --locked --quiet --bin frontdoor; fi
# The generator is a debug build: it only pushes frames (rustls and ring's assembly do the
# work), and a fat-LTO bench build would take longer than the run.
cargo build --locked --quiet --bin frontdoor --bench h2abuse
gen=$(ls -t "${CARGO_TARGET_DIR:-target}"/debug/deps/h2abuse-* | grep -v '\.d$' | head -1)
bin="${CARGO_TARGET_DIR:-target}/$profile/frontdoor"
source benches/common.sh

sim=$(free_port); https=$(free_port); admin=$(free_port)
"$gen" certs "$tmp"
taskset -c 1 "$bin" simulate --listen "127.0.0.1:$sim" --workers 16 --service-ms 1 >/dev/null 2>&1 &
pids+=($!)
{ fd_head 1 "$https" "$admin"; cat <<TOML
[pools.app]
backends = ["127.0.0.1:$sim"]
[[routes]]
name = "all"
path = "/{rest*}"
pool = "app"
TOML
} > "$tmp/fd.toml"
RUST_LOG=error taskset -c 0 "$bin" run "$tmp/fd.toml" 2>"$tmp/fd.err" & fd_pid=$!; pids+=($fd_pid)
wait_port "$sim"; wait_port "$https"

printf '%-19s %9s %10s %12s %11s %9s %9s\n' mode cpu_s cpu_share sent hangups probe_p50 probe_p99
for mode in normal rapid-reset ping-flood settings-flood continuation-flood; do
  before=$(cpu_ticks "$fd_pid")
  line=$(taskset -c 1 "$gen" "$mode" "127.0.0.1:$https" "$tmp/ca.pem" "$secs")
  after=$(cpu_ticks "$fd_pid")
  kill -0 "$fd_pid" 2>/dev/null || { echo "frontdoor died during $mode" >&2; cat "$tmp/fd.err" >&2; exit 1; }
  jq -r --arg cpu "$(awk -v t=$((after - before)) -v c="$clk" 'BEGIN { printf "%.2f", t / c }')" \
    --arg share "$(awk -v t=$((after - before)) -v c="$clk" -v s="$secs" 'BEGIN { printf "%.0f%%", t / c / s * 100 }')" \
    '[.mode, $cpu, $share, .sent, "\(.closed_by_server)/\(.connections)", "\(.probe_p50_ms)ms", "\(.probe_p99_ms)ms", (if .probe_failures > 0 then "probe failures: \(.probe_failures)" else "" end)] | @tsv' <<<"$line" \
    | awk -F'\t' '{ printf "%-19s %9s %10s %12s %11s %9s %9s %s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
  sleep 1 # let closed connections finish before the next mode's CPU count
done
echo "rss_kib_after $(awk '/VmRSS/ {print $2}' "/proc/$fd_pid/status")"
