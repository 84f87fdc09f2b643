#!/usr/bin/env bash
# End-to-end load: frontdoor (release build) in front of the Dashboard simulator, against the
# simulator alone. Prints requests/s, p50/p99 latency and frontdoor CPU per 1,000 requests for
# small dynamic responses (the simulator's /echo, ~0.6 KB of JSON, answered without a worker
# slot so the app is never the bottleneck) over HTTP/1.1+TLS (wrk) and h2 (h2load), the
# latency frontdoor adds at low concurrency, and what the access log costs. nginx (Debian's
# nginx-light, one worker, same certificate, same upstream keep-alive, access log off) runs
# the same loads as the reference.
#
#   bash benches/load.sh            # 3 rounds of 15 s runs, medians (about 8 minutes)
#   bash benches/load.sh --quick    # 1 round of 4 s runs (about a minute)
#
# Pinning on 2 cores: frontdoor alone on core 0; the load generator and the upstream
# simulator on core 1. The direct baseline puts a second simulator alone on core 0, so both
# sides of the comparison have core 0 to themselves. Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3; secs=15
if [ "${1:-}" = "--quick" ]; then rounds=1; secs=4; fi

bash .ci/setup wrk:wrk nghttp2-client:h2load util-linux:taskset nginx-light:nginx
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/frontdoor"
source benches/common.sh

sim_up=$(free_port); sim_direct=$(free_port)
taskset -c 1 "$bin" simulate --listen "127.0.0.1:$sim_up" --workers 256 --service-ms 0 >/dev/null & pids+=($!)
taskset -c 0 "$bin" simulate --listen "127.0.0.1:$sim_direct" --workers 256 --service-ms 0 >/dev/null & pids+=($!)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null

nginx_port=$(free_port)
mkdir -p "$tmp/nginx/logs"
cat > "$tmp/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
$(nginx_temp_paths)
  upstream app { server 127.0.0.1:$sim_up; keepalive 256; }
  server {
    listen 127.0.0.1:$nginx_port ssl http2;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 100000;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Request-Start "t=\$msec";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
    }
  }
}
CONF
taskset -c 0 nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" & nginx_pid=$!; pids+=($nginx_pid)
wait_port "$nginx_port"
nginx_worker=$(pgrep -P "$nginx_pid" | head -1)

fd_pid=""
# start_frontdoor ACCESS_LOG: (re)starts frontdoor on core 0, one worker thread.
start_frontdoor() {
  [ -n "$fd_pid" ] && { kill "$fd_pid"; wait "$fd_pid" 2>/dev/null || true; }
  https=$(free_port); admin=$(free_port)
  cat > "$tmp/fd.toml" <<TOML
[server]
threads = 1
grace-period = "0s"
graceful-shutdown-timeout = "1s"
access-log = "$1"
[listen]
https = "127.0.0.1:$https"
admin = "127.0.0.1:$admin"
[[tls.certificates]]
cert = "cert.pem"
key = "key.pem"
[pools.app]
backends = ["127.0.0.1:$sim_up"]
[[routes]]
name = "all"
path = "/{rest*}"
pool = "app"
TOML
  RUST_LOG=warn taskset -c 0 "$bin" run "$tmp/fd.toml" 2>"$tmp/fd.err" & fd_pid=$!; pids+=($fd_pid)
  wait_port "$https"; wait_port "$admin"
  echo "frontdoor $fd_pid on $https (access log: $1)" >&2
}

# Each measurement prints: rps p50_ms p99_ms [cpu_ms_per_1k] (run_wrk: benches/common.sh)
run_h2load() { # URL PID
  local before after out rps reqs lat
  before=$(cpu_ticks "$2")
  out=$(taskset -c 1 h2load -c32 -m10 -D "$secs" --log-file="$tmp/h2.log" "$1" 2>&1)
  after=$(cpu_ticks "$2")
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  reqs=$(awk '/^requests:/ {print $8}' <<<"$out") # succeeded
  grep -q "0 failed, 0 errored" <<<"$out" || { echo "h2load reported failures:" >&2; grep "^requests:" <<<"$out" >&2; }
  lat=$(h2_percentiles "$tmp/h2.log")
  echo "$rps $lat $(cpu_per_1k $((after - before)) "$reqs")"
}


for round in $(seq "$rounds"); do
  echo "round $round/$rounds ..." >&2
  start_frontdoor off
  record direct_h1 "$(run_wrk "http://127.0.0.1:$sim_direct/echo" 32 "")"
  record fd_h1 "$(run_wrk "https://127.0.0.1:$https/echo" 32 "$fd_pid")"
  record fd_h2 "$(run_h2load "https://127.0.0.1:$https/echo" "$fd_pid")"
  record nginx_h1 "$(run_wrk "https://127.0.0.1:$nginx_port/echo" 32 "$nginx_worker")"
  record nginx_h2 "$(run_h2load "https://127.0.0.1:$nginx_port/echo" "$nginx_worker")"
  record direct_c4 "$(run_wrk "http://127.0.0.1:$sim_direct/echo" 4 "")"
  record fd_c4 "$(run_wrk "https://127.0.0.1:$https/echo" 4 "$fd_pid")"
  start_frontdoor "$tmp/access.log"
  record fd_h1_logged "$(run_wrk "https://127.0.0.1:$https/echo" 32 "$fd_pid")"
done

summary() { # NAME LABEL
  local rows=${results[$1]}
  printf "%-46s %9s req/s  p50 %7s ms  p99 %7s ms" "$2" \
    "$(col 1 <<<"$rows" | median)" "$(col 2 <<<"$rows" | median)" "$(col 3 <<<"$rows" | median)"
  local cpu; cpu=$(col 4 <<<"$rows" | median || true)
  [ -n "$cpu" ] && printf "  proxy CPU %6s ms/1k req" "$cpu"
  echo
}
echo
echo "frontdoor load benchmark: $rounds round(s) of ${secs}s, medians; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
summary direct_h1    "simulator direct, HTTP/1.1, 32 conns"
summary fd_h1        "frontdoor, HTTP/1.1+TLS, 32 conns"
summary fd_h2        "frontdoor, h2 (32 conns x 10 streams)"
summary fd_h1_logged "frontdoor, HTTP/1.1+TLS, 32 conns, access log"
summary nginx_h1     "nginx, HTTP/1.1+TLS, 32 conns"
summary nginx_h2     "nginx, h2 (32 conns x 10 streams)"
summary direct_c4    "simulator direct, HTTP/1.1, 4 conns"
summary fd_c4        "frontdoor, HTTP/1.1+TLS, 4 conns"
added=$(awk -v a="$(col 2 <<<"${results[fd_c4]}" | median)" -v b="$(col 2 <<<"${results[direct_c4]}" | median)" 'BEGIN {printf "%.3f", a - b}')
echo "latency frontdoor adds at 4 connections (p50 through frontdoor - p50 direct): ${added} ms"
echo "access log lines written: $(wc -l < "$tmp/access.log")"
