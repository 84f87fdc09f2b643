#!/usr/bin/env bash
# Enqueue throughput of offload routes: jobs/s answered 202 (each one durable before its 202)
# and the 202's p50/p99, for the embedded store (redb, fsync per job, on this disk) and for
# Redis (a local redis-server with `appendonly yes`, `appendfsync everysec`). Replays are held
# back (pool rate 1/h) so that only the enqueue path is measured. h2load sends POSTs with a
# 200-byte body over h2 to a route without a dedup key: every request is a new job.
#
#   bash benches/jobs_load.sh            # 3 rounds of 10 s runs per store and concurrency, medians
#   bash benches/jobs_load.sh --quick    # 1 round of 4 s runs
#
# Pinning on 2 cores: frontdoor on core 0; h2load, the simulator and redis-server on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3; secs=10
if [ "${1:-}" = "--quick" ]; then rounds=1; secs=4; fi

bash .ci/setup nghttp2-client:h2load util-linux:taskset redis-server:redis-server
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/frontdoor"
source benches/common.sh

sim=$(free_port)
taskset -c 1 "$bin" simulate --listen "127.0.0.1:$sim" --workers 16 --service-ms 0 >/dev/null & pids+=($!)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
head -c 150 /dev/zero | tr '\0' 'x' | sed 's/^/{"note":"/; s/$/"}/' > "$tmp/body.json"
redis_port=$(free_port)
mkdir -p "$tmp/redis"
taskset -c 1 redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/redis" --save '' \
  --appendonly yes --appendfsync everysec >/dev/null & pids+=($!)
wait_port "$sim"; wait_port "$redis_port"

fd_pid=""
start_frontdoor() { # STORE-LINES
  [ -n "$fd_pid" ] && { kill "$fd_pid"; wait "$fd_pid" 2>/dev/null || true; }
  https=$(free_port); admin=$(free_port)
  { fd_head 2 "$https" "$admin"; cat <<TOML
[pools.app]
backends = ["127.0.0.1:$sim"]
[jobs]
$1
rates = { app = "1/h" }
[[routes]]
name = "export"
path = "/echo/{rest*}"
pool = "app"
[routes.offload]
TOML
  } > "$tmp/fd.toml"
  RUST_LOG=warn taskset -c 0 "$bin" run "$tmp/fd.toml" 2>"$tmp/fd.err" & fd_pid=$!; pids+=($fd_pid)
  wait_port "$https"; wait_port "$admin"
}

run_h2load() { # CLIENTS STREAMS-PER-CLIENT
  local out rps
  out=$(taskset -c 1 h2load -c"$1" -m"$2" -D "$secs" -d "$tmp/body.json" \
    -H 'content-type: application/json' --log-file="$tmp/h2.log" "https://127.0.0.1:$https/echo/export" 2>&1)
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  grep -q "0 failed, 0 errored" <<<"$out" || { echo "h2load reported failures:" >&2; grep "^requests:\|^status codes" <<<"$out" >&2; }
  grep -q "status codes: [1-9][0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" <<<"$out" || { echo "not all 202:" >&2; grep "^status codes" <<<"$out" >&2; }
  echo "$rps $(h2_percentiles "$tmp/h2.log")"
}

for round in $(seq "$rounds"); do
  echo "round $round/$rounds ..." >&2
  rm -f "$tmp/jobs.redb"
  start_frontdoor "store = \"embedded\"
path = \"$tmp/jobs.redb\""
  record embedded_c1 "$(run_h2load 1 1)"
  record embedded_c32 "$(run_h2load 4 8)"
  start_frontdoor "store = \"redis\"
redis-url = \"redis://127.0.0.1:$redis_port/\"
redis-prefix = \"bench$round\""
  record redis_c1 "$(run_h2load 1 1)"
  record redis_c32 "$(run_h2load 4 8)"
done

summary() { # NAME LABEL
  local rows; rows="${results[$1]}"
  printf "| %-34s | %8s | %7s | %7s |\n" "$2" "$(col 1 <<<"$rows" | median)" \
    "$(col 2 <<<"$rows" | median)" "$(col 3 <<<"$rows" | median)"
}
echo
echo "| store, in flight                   |   jobs/s | p50 ms  | p99 ms  |"
echo "|---|---:|---:|---:|"
summary embedded_c1 "embedded (redb), 1"
summary embedded_c32 "embedded (redb), 32"
summary redis_c1 "redis (AOF everysec), 1"
summary redis_c32 "redis (AOF everysec), 32"
