#!/usr/bin/env bash
# The simulator's ~500 KB JS bundle, fingerprinted, served from memory by frontdoor against
# nginx with brotli_static/gzip_static serving the same precompressed bytes, with the
# Accept-Encoding Chrome sends. Prints requests/s, p99, bytes per response and the proxy's CPU
# per 1,000 requests, over HTTP/1.1+TLS (wrk) and h2 (h2load).
#
#   bash benches/assets_load.sh           # 3 rounds of 15 s, medians
#   bash benches/assets_load.sh --quick   # 1 round of 4 s
#
# frontdoor and nginx each run alone on core 0 (one thread / one worker); the load generator
# and the simulator on core 1. Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3; secs=15
if [ "${1:-}" = "--quick" ]; then rounds=1; secs=4; fi

bash .ci/setup wrk:wrk nghttp2-client:h2load util-linux:taskset nginx-light:nginx curl:curl
if [ ! -e /usr/lib/nginx/modules/ngx_http_brotli_static_module.so ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libnginx-mod-http-brotli-static >/dev/null
fi
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/frontdoor"
source benches/common.sh
chrome="gzip, deflate, br, zstd"

sim=$(free_port); https=$(free_port); admin=$(free_port); nginx_port=$(free_port)
taskset -c 1 "$bin" simulate --listen "127.0.0.1:$sim" --workers 16 --service-ms 0 >/dev/null & pids+=($!)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
wait_port "$sim"
asset=$(curl -s "http://127.0.0.1:$sim/" | grep -o '/assets/application-[0-9a-f]*\.js')

{ fd_head 1 "$https" "$admin"; cat <<TOML
[pools.app]
backends = ["127.0.0.1:$sim"]
[[routes]]
name = "assets"
path = "/assets/{file*}"
pool = "app"
[routes.assets]
source = "upstream"
TOML
} > "$tmp/fd.toml"
RUST_LOG=warn taskset -c 0 "$bin" run "$tmp/fd.toml" 2>"$tmp/fd.err" & fd_pid=$!; pids+=($fd_pid)
wait_port "$https"
# Warm: fill, then wait until the Brotli variant is served; keep its bytes for nginx.
mkdir -p "$tmp/public/assets"
for _ in $(seq 100); do
  enc=$(curl -sk -o "$tmp/public$asset.br" -D - -H "accept-encoding: br" "https://127.0.0.1:$https$asset" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')
  [ "$enc" = "br" ] && break; sleep 0.2
done
[ "$enc" = "br" ] || { echo "frontdoor never served br" >&2; exit 1; }
curl -sk -o "$tmp/public$asset.gz" -H "accept-encoding: gzip" "https://127.0.0.1:$https$asset"
curl -s -o "$tmp/public$asset" "http://127.0.0.1:$sim$asset"

mkdir -p "$tmp/nginx"
cat > "$tmp/nginx/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_http_brotli_static_module.so;
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
$(nginx_temp_paths)
  types { application/javascript js; }
  server {
    listen 127.0.0.1:$nginx_port ssl http2;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    keepalive_requests 100000;
    root $tmp/public;
    brotli_static on;
    gzip_static on;
    location /assets/ { add_header Cache-Control "public, max-age=31536000, immutable"; etag on; }
  }
}
CONF
taskset -c 0 nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" & nginx_pid=$!; pids+=($nginx_pid)
wait_port "$nginx_port"
nginx_worker=$(pgrep -P "$nginx_pid" | head -1)
nginx_enc=$(curl -sk -o /dev/null -D - -H "accept-encoding: $chrome" "https://127.0.0.1:$nginx_port$asset" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')
[ "$nginx_enc" = "br" ] || { echo "nginx does not serve the br file (got '$nginx_enc')" >&2; exit 1; }

run_wrk() { # URL PID -> rps p99 bytes/resp cpu/1k
  local before after out reqs
  before=$(cpu_ticks "$2")
  out=$(taskset -c 1 wrk -t1 -c16 -d"${secs}s" --latency -H "accept-encoding: $chrome" "$1")
  after=$(cpu_ticks "$2")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")") \
$(awk -v b="$(to_bytes "$(awk '/requests in/ {print $5}' <<<"$out" | tr -d ,)")" -v n="$reqs" 'BEGIN {printf "%.0f", b/n}') \
$(cpu_per_1k $((after - before)) "$reqs")"
}
run_h2load() { # URL PID
  local before after out reqs
  before=$(cpu_ticks "$2")
  out=$(taskset -c 1 h2load -c16 -m4 -D "$secs" -H "accept-encoding: $chrome" --log-file="$tmp/h2.log" "$1" 2>&1)
  after=$(cpu_ticks "$2")
  reqs=$(awk '/^requests:/ {print $8}' <<<"$out")
  grep -q "0 failed, 0 errored" <<<"$out" || { echo "h2load reported failures:" >&2; grep "^requests:" <<<"$out" >&2; }
  echo "$(awk '/^finished in/ {print $4}' <<<"$out") \
$(h2_percentiles "$tmp/h2.log" | col 2) \
$(awk '/^traffic:/ {print $2}' <<<"$out" | awk -v n="$reqs" '{ v=$1; m=1; if (v ~ /KB$/) m=1024; else if (v ~ /MB$/) m=1048576; else if (v ~ /GB$/) m=1073741824; sub(/[KMG]?B$/,"",v); printf "%.0f", v*m/n }') \
$(cpu_per_1k $((after - before)) "$reqs")"
}

for round in $(seq "$rounds"); do
  echo "round $round/$rounds ..." >&2
  record fd_h1 "$(run_wrk "https://127.0.0.1:$https$asset" "$fd_pid")"
  record nginx_h1 "$(run_wrk "https://127.0.0.1:$nginx_port$asset" "$nginx_worker")"
  record fd_h2 "$(run_h2load "https://127.0.0.1:$https$asset" "$fd_pid")"
  record nginx_h2 "$(run_h2load "https://127.0.0.1:$nginx_port$asset" "$nginx_worker")"
done

summary() {
  local rows=${results[$1]}
  printf "%-34s %9s req/s  p99 %8s ms  %8s bytes/resp  proxy CPU %6s ms/1k req\n" "$2" \
    "$(col 1 <<<"$rows" | median)" "$(col 2 <<<"$rows" | median)" "$(col 3 <<<"$rows" | median)" "$(col 4 <<<"$rows" | median)"
}
echo
echo "asset benchmark: $asset ($(stat -c %s "$tmp/public$asset") bytes identity, $(stat -c %s "$tmp/public$asset.br") br); $rounds round(s) of ${secs}s, medians"
summary fd_h1    "frontdoor, HTTP/1.1+TLS, 16 conns"
summary nginx_h1 "nginx brotli_static, HTTP/1.1+TLS"
summary fd_h2    "frontdoor, h2 (16 conns x 4)"
summary nginx_h2 "nginx brotli_static, h2"
echo "frontdoor brotli compressions: $(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^frontdoor_asset_compressions_total\{encoding="br"\}/ {print $2}') (one per asset, never per request)"
