#!/usr/bin/env bash
# Buffering must not cost the fast path (issue 14): frontdoor's CPU per 1,000 proxied requests,
# for a build before request/response buffering (BEFORE, a frontdoor binary) and this tree's,
# back to back on the same loads: a page (/training, 1.5 KB of HTML) and a 256 KiB answer
# (/downloads/262144), each from the simulator (256 workers, no service time, so the app is
# never the bottleneck), wrk with 32 connections over HTTPS/1.1. frontdoor (`threads = 1`)
# alone on core 0; wrk and the simulator on core 1. Rounds alternate before/after; medians.
#
#   bash benches/buffering_cpu.sh BEFORE            # 3 rounds of 15 s runs (about 5 minutes)
#   bash benches/buffering_cpu.sh BEFORE --quick    # 1 round of 4 s runs
#
# BEFORE: e.g. git worktree add /tmp/fd-pre14 4b53e8c && (cd /tmp/fd-pre14 &&
# cargo build --profile profiling) → /tmp/fd-pre14/target/profiling/frontdoor (the profile as
# in this Cargo.toml). Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."

before=${1:?usage: buffering_cpu.sh BEFORE-BINARY [--quick]}
before=$(realpath "$before")
rounds=3; secs=15
if [ "${2:-}" = "--quick" ]; then rounds=1; secs=4; fi

bash .ci/setup wrk:wrk util-linux:taskset
profile=${PROFILE:-profiling}
cargo build --profile "$profile" --locked --quiet
after="${CARGO_TARGET_DIR:-target}/$profile/frontdoor"
source benches/common.sh

sim=$(free_port)
taskset -c 1 "$after" simulate --listen "127.0.0.1:$sim" --workers 256 --service-ms 0 >/dev/null & pids+=($!)
"$after" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
wait_port "$sim"

fd_pid=""
# start BINARY: (re)starts that frontdoor on core 0, one worker thread, in front of $sim.
start() {
  [ -n "$fd_pid" ] && { kill "$fd_pid"; wait "$fd_pid" 2>/dev/null || true; }
  https=$(free_port); admin=$(free_port)
  { fd_head 1 "$https" "$admin"; cat <<TOML
[pools.app]
backends = ["127.0.0.1:$sim"]
[[routes]]
name = "all"
path = "/{rest*}"
pool = "app"
TOML
  } > "$tmp/fd.toml"
  RUST_LOG=warn taskset -c 0 "$1" run "$tmp/fd.toml" 2>"$tmp/fd.err" & fd_pid=$!; pids+=($fd_pid)
  wait_port "$https"
}

for round in $(seq "$rounds"); do
  echo "round $round/$rounds ..." >&2
  for which in before after; do
    if [ "$which" = before ]; then start "$before"; else start "$after"; fi
    for load in page big; do
      if [ "$load" = page ]; then path=/training; else path=/downloads/262144; fi
      row=$(run_wrk "https://127.0.0.1:$https$path" 32 "$fd_pid")
      echo "  $which $load: $row (req/s p50 p99 ms/1k)" >&2
      record "${which}_$load" "$row"
    done
  done
done

echo "frontdoor CPU per 1,000 proxied requests, before ($before) vs after ($after);" \
  "$rounds round(s) of ${secs}s, medians; $(date -u +%F); $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for load in page big; do
  b=$(col 4 <<<"${results[before_$load]}" | median); a=$(col 4 <<<"${results[after_$load]}" | median)
  br=$(col 1 <<<"${results[before_$load]}" | median); ar=$(col 1 <<<"${results[after_$load]}" | median)
  printf "%-5s before %7s ms/1k (%9s req/s)  after %7s ms/1k (%9s req/s)  after/before %s\n" \
    "$load" "$b" "$br" "$a" "$ar" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')"
done
