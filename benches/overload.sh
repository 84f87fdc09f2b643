#!/usr/bin/env bash
# The overload run (issue 6): the simulator with 4 workers × 25 ms (capacity 160 req/s) offered
# 3× its capacity, open loop (benches/overload.rs), for 30 s, with a /healthz probe every 50 ms
# and every tenth request to a critical route. The same load against frontdoor (4 slots,
# target 20 ms, CoDel's own interval of 100 ms: a steady overload, not page-load bursts), HAProxy (`maxconn 4` + `timeout queue`, critical routes in a higher priority
# class, `monitor-uri /healthz`) and nginx (plain proxy, `location = /healthz` answered by
# nginx), one after the other, each proxy alone on core 0 over HTTPS/1.1; the generator and
# the simulator on core 1. Prints one JSON line per proxy.
#
#   bash benches/overload.sh            # 480 req/s for 30 s
#   bash benches/overload.sh --quick    # 480 req/s for 5 s
set -euo pipefail
cd "$(dirname "$0")/.."

secs=30
if [ "${1:-}" = "--quick" ]; then secs=5; fi
rate=480

bash .ci/setup util-linux:taskset nginx-light:nginx haproxy:haproxy curl:curl
cargo build --release --locked --quiet
cargo bench --locked --bench overload --no-run --quiet 2>/dev/null
gen=$(ls -t target/release/deps/overload-* | grep -v '\.d$' | head -1)
bin="${CARGO_TARGET_DIR:-target}/release/frontdoor"
source benches/common.sh

sim=$(free_port); fd=$(free_port); admin=$(free_port); hap=$(free_port); ngx=$(free_port)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
cat "$tmp/cert.pem" "$tmp/key.pem" > "$tmp/haproxy.pem"

run_sim() {
  taskset -c 1 "$bin" simulate --listen "127.0.0.1:$sim" --workers 4 --service-ms 25 >/dev/null 2>&1 &
  sim_pid=$!; pids+=($sim_pid); wait_port "$sim"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
load() { taskset -c 1 "$gen" "$1" "$rate" "$secs" /training /courses/mit/physics /healthz; }

{ fd_head 1 "$fd" "$admin"; cat <<TOML
[pools.app]
backends = ["127.0.0.1:$sim"]
[pools.app.admission]
slots = 4
target = "20ms"
interval = "100ms"
queue-timeout = "1s"
[[routes]]
name = "critical"
path = "/courses/{school}/{title}"
pool = "app"
priority = "critical"
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
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  timeout queue 1s
frontend fe
  bind 127.0.0.1:$hap ssl crt $tmp/haproxy.pem alpn http/1.1
  monitor-uri /healthz
  http-request set-priority-class int(-10) if { path_beg /courses/ }
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
    location = /healthz { return 200 "ok\n"; }
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 30s;
    }
  }
}
CONF

echo "offered: $rate req/s for $secs s; capacity 160 req/s (4 workers x 25 ms)"
run_sim
RUST_LOG=warn taskset -c 0 "$bin" run "$tmp/fd.toml" 2>"$tmp/fd.err" & fd_pid=$!; pids+=($fd_pid)
wait_port "$fd"
echo "frontdoor: $(load "https://127.0.0.1:$fd")"
curl -s "http://127.0.0.1:$admin/metrics" | grep -E '^frontdoor_shed_total' | sed 's/^/  /'
stop "$fd_pid"; stop "$sim_pid"

run_sim
taskset -c 0 haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.err" 2>&1 & hap_pid=$!; pids+=($hap_pid)
wait_port "$hap"
echo "haproxy: $(load "https://127.0.0.1:$hap")"
stop "$hap_pid"; stop "$sim_pid"

run_sim
taskset -c 0 nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" & ngx_pid=$!; pids+=($ngx_pid)
wait_port "$ngx"
echo "nginx: $(load "https://127.0.0.1:$ngx")"
stop "$ngx_pid"; stop "$sim_pid"
