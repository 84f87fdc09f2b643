#!/usr/bin/env bash
# The overload run (issue 6): the simulator with 4 workers × 25 ms (capacity 160 req/s) offered
# 3× its capacity, open loop (benches/overload.rs), for 30 s, with a /healthz probe every 50 ms
# and every tenth request to a critical route. The same load against frontdoor twice (4 slots,
# queue timeout 1 s: once with CoDel's own interval of 100 ms and target 20 ms, a steady
# overload rather than page-load bursts; once with the shipped defaults, target 20 ms and
# interval 500 ms), HAProxy (`maxconn 4` + `timeout queue`, critical routes in a higher
# priority class, `monitor-uri /healthz`) and nginx (plain proxy, `location = /healthz`
# answered by nginx), one after the other, each proxy alone on core 0 over HTTPS/1.1; the
# generator and the simulator on core 1. First the app's own capacity: 4 connections, closed
# loop, straight to the simulator. Prints one line per proxy: `NAME: {JSON}`.
#
#   bash benches/overload.sh                      # 480 req/s for 30 s
#   bash benches/overload.sh --quick              # 480 req/s for 5 s
#   bash benches/overload.sh --profile profiling  # frontdoor built with that Cargo profile
#   bash benches/overload.sh --bin PATH           # this frontdoor binary (an earlier build)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=30; profile=release; bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) secs=5 ;;
    --profile) profile=$2; shift ;;
    --bin) bin=$(realpath "$2"); shift ;;
    *) echo "usage: $0 [--quick] [--profile NAME] [--bin PATH]" >&2; exit 2 ;;
  esac
  shift
done
rate=480

bash .ci/setup util-linux:taskset nginx-light:nginx haproxy:haproxy curl:curl wrk:wrk
[ -n "$bin" ] || cargo build --profile "$profile" --locked --quiet --bin frontdoor
cargo bench --profile "$profile" --locked --bench overload --no-run --quiet 2>/dev/null
target="${CARGO_TARGET_DIR:-target}/$profile"
gen=$(ls -t "$target"/deps/overload-* | grep -v '\.d$' | head -1)
[ -n "$bin" ] || bin="$target/frontdoor"
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

# fd_config INTERVAL-LINE: frontdoor's config; the interval line empty = the shipped default.
fd_config() { fd_head 1 "$fd" "$admin"; cat <<TOML
[pools.app]
backends = ["127.0.0.1:$sim"]
[pools.app.admission]
slots = 4
target = "20ms"
$1
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
}

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

echo "offered: $rate req/s for $secs s; nominal capacity 160 req/s (4 workers x 25 ms)"
run_sim
capacity=$(taskset -c 1 wrk -t1 -c4 -d"$((secs < 10 ? 3 : 5))s" "http://127.0.0.1:$sim/training" | awk '/Requests\/sec/ {print $2}')
echo "capacity: {\"app_per_s\":$capacity}"
stop "$sim_pid"

# run_frontdoor NAME INTERVAL-LINE
run_frontdoor() {
  fd_config "$2" > "$tmp/fd.toml"
  run_sim
  RUST_LOG=warn taskset -c 0 "$bin" run "$tmp/fd.toml" 2>"$tmp/fd.err" & fd_pid=$!; pids+=($fd_pid)
  wait_port "$fd"
  echo "$1: $(load "https://127.0.0.1:$fd")"
  curl -s "http://127.0.0.1:$admin/metrics" | grep -E '^frontdoor_shed_total' | sed 's/^/  /' >&2
  stop "$fd_pid"; stop "$sim_pid"
}
run_frontdoor frontdoor 'interval = "100ms"'
run_frontdoor frontdoor-defaults ''

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
