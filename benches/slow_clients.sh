#!/usr/bin/env bash
# Slow clients (issue 14): page throughput of a 4-worker app (the simulator, 4 workers × 25 ms)
# measured by a closed-loop wrk (4 connections, /training over HTTPS/1.1), first alone, then
# while 20 clients trickle 256 KiB uploads at 20 KiB/s (POST /uploads: the app takes a worker,
# then reads the body) and 20 clients read a 4 MiB answer at 100 KiB/s (GET /downloads/4194304:
# the app holds a worker until its last byte is written). The same run against frontdoor
# (`slots = 4`, request and response buffering on by default), nginx (defaults:
# proxy_request_buffering and proxy_buffering on) and HAProxy (`option http-buffer-request`,
# `maxconn 4`), one after the other, each proxy alone on core 0; wrk, the slow clients
# (benches/slow_clients.py) and the simulator on core 1. A proxy that lets slow clients hold
# app workers drops the pages' throughput; one that buffers keeps it at the app's capacity.
#
#   bash benches/slow_clients.sh            # 20 s per measurement (about 5 minutes)
#   bash benches/slow_clients.sh --quick    # 8 s per measurement (about 2.5 minutes)
#   ONLY="frontdoor nginx" bash benches/slow_clients.sh   # some of the proxies
#   DOWNLOAD_MIB=16 bash benches/slow_clients.sh          # larger slow answers
#
# Prints, per proxy: pages/s (2xx only), p50 and p99 alone, under the slow uploads, under the
# slow readers and under both, each with a fresh simulator and proxy, and the slow clients' own
# progress (transfers completed, bytes, statuses). Only 127.0.0.1 is used;
# every client stops at a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=20; settle=5
if [ "${1:-}" = "--quick" ]; then secs=8; settle=3; fi
uploaders=20; upload_bytes=$((256 * 1024)); upload_rate=$((20 * 1024))
readers=20; download_bytes=$((${DOWNLOAD_MIB:-4} * 1024 * 1024)); read_rate=$((100 * 1024))

bash .ci/setup wrk:wrk util-linux:taskset nginx-light:nginx haproxy:haproxy curl:curl
profile=${PROFILE:-profiling}
cargo build --profile "$profile" --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/$profile/frontdoor"
source benches/common.sh

sim=$(free_port); fd=$(free_port); admin=$(free_port); hap=$(free_port); ngx=$(free_port)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
cat "$tmp/cert.pem" "$tmp/key.pem" > "$tmp/haproxy.pem"

run_sim() {
  taskset -c 1 "$bin" simulate --listen "127.0.0.1:$sim" --workers 4 --service-ms 25 >/dev/null 2>&1 &
  sim_pid=$!; pids+=($sim_pid); wait_port "$sim"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# pages PORT: wrk, 4 connections, $secs s; prints "ok_per_s p50_ms p99_ms failed" where
# failed counts non-2xx answers, socket errors and timeouts.
pages() {
  local out reqs bad errs p50 p99
  out=$(taskset -c 1 wrk -t1 -c4 -d"${secs}s" --timeout 10s --latency "https://127.0.0.1:$1/training")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); bad=${bad:-0}
  errs=$(awk -F'[ ,]+' '/Socket errors/ {print $5 + $7 + $9 + $11}' <<<"$out"); errs=${errs:-0}
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  awk -v r="$reqs" -v b="$bad" -v s="$secs" -v p50="$p50" -v p99="$p99" -v e="$errs" \
    'BEGIN { printf "%.1f %s %s %d", (r - b) / s, p50, p99, b + e }'
}

# phase PORT UPLOADERS READERS: the slow clients for $settle + $secs s, pages measured after
# the first $settle s; prints the pages line, a tab, and the slow clients' JSON.
phase() {
  local sc loaded
  taskset -c 1 python3 benches/slow_clients.py "$1" $((settle + secs + 1)) \
    "$2" "$upload_bytes" "$upload_rate" "$3" "$download_bytes" "$read_rate" \
    > "$tmp/slow.json" & sc=$!; pids+=($sc)
  sleep "$settle"
  loaded=$(pages "$1")
  wait "$sc" || true
  printf "%s\t%s\n" "$loaded" "$(cat "$tmp/slow.json")"
}

# row NAME "ok p50 p99 failed" ALONE_OK: one line of the table.
row() {
  local ok p50 p99 bad
  read -r ok p50 p99 bad <<<"$2"
  printf "  %-22s %7s pages/s (%4s%% of alone)  p50 %9s ms  p99 %9s ms  failed %s\n" "$1" "$ok" \
    "$(awk -v a="$3" -v l="$ok" 'BEGIN { if (a > 0) printf "%.0f", 100 * l / a; else printf "-" }')" \
    "$p50" "$p99" "$bad"
}

# measure NAME PORT: pages alone, then under slow uploads, slow readers, and both; each of the
# four with a fresh simulator and a fresh proxy (up_NAME / down_NAME), so that nothing a
# phase left queued (HAProxy serves requests whose clients left) weighs on the next.
measure() {
  local alone ok out
  run_sim; "up_$1"; alone=$(pages "$2"); ok=${alone%% *}; "down_$1"; stop "$sim_pid"
  echo "$1"
  row "alone" "$alone" "$ok"
  for kind in uploads readers both; do
    run_sim; "up_$1"
    case $kind in
      uploads) out=$(phase "$2" "$uploaders" 0) ;;
      readers) out=$(phase "$2" 0 "$readers") ;;
      both) out=$(phase "$2" "$uploaders" "$readers") ;;
    esac
    row "slow $kind" "${out%%$'\t'*}" "$ok"
    echo "    slow clients: ${out#*$'\t'}"
    [ "$1" = frontdoor ] && fd_metrics
    "down_$1"; stop "$sim_pid"
  done
}

{ fd_head 1 "$fd" "$admin"; cat <<TOML
[pools.app]
backends = ["127.0.0.1:$sim"]
[pools.app.admission]
slots = 4
[[routes]]
name = "app"
path = "/{rest*}"
pool = "app"
TOML
} > "$tmp/fd.toml"

cat > "$tmp/haproxy.cfg" <<CFG
global
  maxconn 8000
defaults
  mode http
  option http-buffer-request
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout http-request 60s
  timeout queue 30s
frontend fe
  bind 127.0.0.1:$hap ssl crt $tmp/haproxy.pem alpn http/1.1
  default_backend app
backend app
  http-reuse always
  server app 127.0.0.1:$sim maxconn 4
CFG

mkdir -p "$tmp/nginx"
cat > "$tmp/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log error;
events { worker_connections 8000; }
http {
  access_log off;
$(nginx_temp_paths)
  upstream app { server 127.0.0.1:$sim; keepalive 64; }
  server {
    listen 127.0.0.1:$ngx ssl;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 60s;
    }
  }
}
CONF

echo "slow-client run, $(date -u +%F): app 4 workers x 25 ms; pages: wrk -c4 ${secs}s /training;" \
  "slow: $uploaders x $((upload_bytes / 1024)) KiB up at $((upload_rate / 1024)) KiB/s," \
  "$readers x $((download_bytes / 1048576)) MiB down at $((read_rate / 1024)) KiB/s; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
only=${ONLY:-frontdoor nginx haproxy}

up_frontdoor() {
  RUST_LOG=warn taskset -c 0 "$bin" run "$tmp/fd.toml" 2>>"$tmp/fd.err" & fd_pid=$!; pids+=($fd_pid)
  wait_port "$fd"; wait_port "$admin"
}
down_frontdoor() { stop "$fd_pid"; }
fd_metrics() {
  curl -s "http://127.0.0.1:$admin/metrics" \
    | grep -E '^frontdoor_(request_bodies_buffered_total|response_buffer_spilled_total|response_buffer_full_total|shed_total)' \
    | tr '\n' ' ' | sed 's/^/    frontdoor: /; s/$/\n/' || true
}
up_nginx() {
  taskset -c 0 nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" & ngx_pid=$!; pids+=($ngx_pid)
  wait_port "$ngx"
}
down_nginx() { stop "$ngx_pid"; }
up_haproxy() {
  taskset -c 0 haproxy -f "$tmp/haproxy.cfg" -db >>"$tmp/haproxy.err" 2>&1 & hap_pid=$!; pids+=($hap_pid)
  wait_port "$hap"
}
down_haproxy() { stop "$hap_pid"; }

for proxy in $only; do
  case $proxy in
    frontdoor) measure frontdoor "$fd" ;;
    nginx) measure nginx "$ngx" ;;
    haproxy) measure haproxy "$hap" ;;
  esac
done
