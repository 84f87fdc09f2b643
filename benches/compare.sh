#!/usr/bin/env bash
# frontdoor, nginx and HAProxy on the same fixtures in one run (issue 16). Prints CPU
# milliseconds per 1,000 requests of each proxy, frontdoor's ratio to each, and the overload
# run's goodput and ok p99:
#   - page, h2:        an 8.8 KB HTML page (a stylesheet and six fingerprinted scripts in its
#                      head) from a fast origin (nginx serving the file), no compression asked;
#                      h2load, 32 connections x 10 streams
#   - page, h1 + TLS:  the same page, wrk, 32 connections
#   - asset, h2, br:   the simulator's ~500 KB JS bundle with Chrome's Accept-Encoding, Brotli
#                      bytes from memory: frontdoor's asset cache (filled once from the
#                      simulator), nginx `brotli_static` (the same bytes, page cache), HAProxy
#                      `http-request return` (the same bytes, loaded at start); h2load, 16 x 4.
#                      frontdoor once more with the client offering only AES-128-GCM and only
#                      AES-256-GCM (TLS 1.3), to show what the cipher costs
#   - overload:        benches/overload.sh (3x the capacity of a 4-worker app)
# frontdoor runs with its defaults (learned hints on, access log off); one worker thread /
# process each. The page's learned `Link` header is checked before the measurements.
#
#   bash benches/compare.sh                       # 3 rounds of 15 s, medians; overload 3 x 30 s
#   bash benches/compare.sh --quick               # 1 round of 4 s; overload 1 x 5 s
#   bash benches/compare.sh --profile profiling   # frontdoor built with that Cargo profile
#   bash benches/compare.sh --no-overload         # the CPU workloads only
#   bash benches/compare.sh --bin PATH            # this frontdoor binary instead of a build
#   bash benches/compare.sh --gen PATH            # this build of benches/overload.rs
#   bash benches/compare.sh --bare                # also a bare Pingora proxy on the page
#                                                 # workloads (benches/bare_pingora.rs): the
#                                                 # floor under frontdoor's cost per page
#   bash benches/compare.sh --baseline BIN        # also an earlier frontdoor binary (a copy
#                                                 # of a previous build), as `before`, in
#                                                 # the same run: before/after on equal terms
#
# Pinning on 2 cores: the proxy under test alone on core 0; the load generator, the origin
# nginx and the simulator on core 1. Only 127.0.0.1 is used. The machine is noisy: compare the
# ratios within one run, not figures across runs.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3; secs=15; profile=release; overload=1; quick=""; baseline=""; bin=""; gen=(); bare=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) rounds=1; secs=4; quick=--quick ;;
    --profile) profile=$2; shift ;;
    --no-overload) overload=0 ;;
    --baseline) baseline=$(realpath "$2"); shift ;;
    --bin) bin=$(realpath "$2"); shift ;;
    --gen) gen=(--gen "$(realpath "$2")"); shift ;;
    --bare) bare=1 ;;
    *) echo "usage: $0 [--quick] [--profile NAME] [--no-overload] [--bin PATH] [--baseline BIN] [--gen PATH] [--bare]" >&2; exit 2 ;;
  esac
  shift
done

bash .ci/setup wrk:wrk nghttp2-client:h2load util-linux:taskset nginx-light:nginx haproxy:haproxy curl:curl
if [ ! -e /usr/lib/nginx/modules/ngx_http_brotli_static_module.so ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libnginx-mod-http-brotli-static >/dev/null
fi
if [ -z "$bin" ]; then
  cargo build --profile "$profile" --locked --quiet --bin frontdoor
  bin="${CARGO_TARGET_DIR:-target}/$profile/frontdoor"
fi
source benches/common.sh
chrome="gzip, deflate, br, zstd"

sim=$(free_port); origin=$(free_port); fd=$(free_port); admin=$(free_port); fdb=$(free_port); adminb=$(free_port)
ngx=$(free_port); hap=$(free_port); hap_asset=$(free_port)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
cat "$tmp/cert.pem" "$tmp/key.pem" > "$tmp/haproxy.pem"

# The simulator: only the source of the asset bundle.
taskset -c 1 "$bin" simulate --listen "127.0.0.1:$sim" --workers 16 --service-ms 0 >/dev/null & pids+=($!)
wait_port "$sim"
asset=$(curl -s "http://127.0.0.1:$sim/" | grep -o '/assets/application-[0-9a-f]*\.js')
mkdir -p "$tmp/public/assets" "$tmp/nginx"
curl -s -o "$tmp/public$asset" "http://127.0.0.1:$sim$asset"

start_page_origin "$origin"

# frontdoor: defaults (learned hints on every route); assets from its memory cache.
fd_config() { fd_head 1 "$1" "$2"; cat <<TOML
[pools.origin]
backends = ["127.0.0.1:$origin"]
[pools.sim]
backends = ["127.0.0.1:$sim"]
[[routes]]
name = "assets"
path = "/assets/{file*}"
pool = "sim"
[routes.assets]
source = "upstream"
[[routes]]
name = "pages"
path = "/{rest*}"
pool = "origin"
TOML
}
# preloads PORT: the number of preload links on the page's answer.
preloads() { curl -sk -o /dev/null -D - "https://127.0.0.1:$1$page" | tr -d '\r' | awk -F': ' 'tolower($1)=="link" {print $2}' | tr ',' '\n' | grep -c 'rel=preload' || true; }
# start_frontdoor BIN PORT ADMIN NAME: started on core 0, asset warmed (Brotli served) and
# the page's hints learned; sets started_pid.
start_frontdoor() {
  fd_config "$2" "$3" > "$tmp/$4.toml"
  RUST_LOG=warn taskset -c 0 "$1" run "$tmp/$4.toml" >/dev/null 2>"$tmp/$4.err" & started_pid=$!; pids+=($started_pid)
  wait_port "$2"
  local enc=""
  for _ in $(seq 100); do
    enc=$(curl -sk -o "$tmp/$4.br" -D - -H "accept-encoding: br" "https://127.0.0.1:$2$asset" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')
    [ "$enc" = "br" ] && break; sleep 0.2
  done
  [ "$enc" = "br" ] || { echo "$4 never served br" >&2; exit 1; }
  curl -sk -o /dev/null "https://127.0.0.1:$2$page"
  local links; links=$(preloads "$2")
  [ "$links" -ge 7 ] || { echo "$4 served the page without its learned hints ($links links)" >&2; exit 1; }
}
start_frontdoor "$bin" "$fd" "$admin" frontdoor; fd_pid=$started_pid
# nginx and HAProxy serve frontdoor's Brotli bytes.
cp "$tmp/frontdoor.br" "$tmp/public$asset.br"
curl -sk -o "$tmp/public$asset.gz" -H "accept-encoding: gzip" "https://127.0.0.1:$fd$asset"
fdb_pid=""; bare_pid=""; barep=$(free_port)
if [ "$bare" = 1 ]; then
  cargo bench --profile "$profile" --locked --bench bare_pingora --no-run --quiet 2>/dev/null
  bare_bin=$(ls -t "${CARGO_TARGET_DIR:-target}/$profile"/deps/bare_pingora-* | grep -v '\.d$' | head -1)
  taskset -c 0 "$bare_bin" "127.0.0.1:$barep" "$tmp/cert.pem" "$tmp/key.pem" "127.0.0.1:$origin" >/dev/null 2>"$tmp/bare.err" & bare_pid=$!; pids+=($bare_pid)
  wait_port "$barep"
fi
if [ -n "$baseline" ]; then start_frontdoor "$baseline" "$fdb" "$adminb" before; fdb_pid=$started_pid; fi

# nginx: one worker; the page proxied (upstream keep-alive, the headers frontdoor adds), the
# asset from disk with brotli_static.
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
  upstream origin { server 127.0.0.1:$origin; keepalive 256; }
  server {
    listen 127.0.0.1:$ngx ssl http2;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 100000;
    location /assets/ {
      root $tmp/public;
      brotli_static on;
      gzip_static on;
      add_header Cache-Control "public, max-age=31536000, immutable";
    }
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Request-Start "t=\$msec";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
    }
  }
}
CONF
taskset -c 0 nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" & ngx_pid=$!; pids+=($ngx_pid)
wait_port "$ngx"
ngx_worker=$(pgrep -P "$ngx_pid" | head -1)

# HAProxy: one thread; the page proxied with the same headers. The asset from a second
# instance whose buffers hold the 100 KB Brotli body (`http-request return` answers from one
# buffer), so the page instance keeps the default buffer size.
cat > "$tmp/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$hap ssl crt $tmp/haproxy.pem alpn h2,http/1.1
  option forwardfor
  http-request set-header X-Request-Start "t=%Ts.%ms"
  http-request set-header X-Forwarded-Proto https
  default_backend origin
backend origin
  http-reuse always
  server origin 127.0.0.1:$origin
CFG
cat > "$tmp/haproxy-asset.cfg" <<CFG
global
  nbthread 1
  maxconn 8000
  tune.bufsize 262144
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$hap_asset ssl crt $tmp/haproxy.pem alpn h2,http/1.1
  http-request return status 200 content-type application/javascript file $tmp/public$asset.br hdr content-encoding br hdr vary accept-encoding hdr cache-control "public, max-age=31536000, immutable" if { path $asset } { req.hdr(accept-encoding) -m sub br }
  http-request return status 404
CFG
taskset -c 0 haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.err" 2>&1 & hap_pid=$!; pids+=($hap_pid)
taskset -c 0 haproxy -f "$tmp/haproxy-asset.cfg" -db >"$tmp/haproxy-asset.err" 2>&1 & hap_asset_pid=$!; pids+=($hap_asset_pid)
wait_port "$hap"; wait_port "$hap_asset"

for port in "$fd" "$ngx" "$hap_asset" ${baseline:+"$fdb"}; do
  enc=$(curl -sk --http2 -o /dev/null -D - -H "accept-encoding: $chrome" "https://127.0.0.1:$port$asset" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')
  [ "$enc" = "br" ] || { echo "port $port did not serve the asset as br (got '$enc')" >&2; exit 1; }
done
for port in "$fd" "$ngx" "$hap" ${baseline:+"$fdb"} ${bare_pid:+"$barep"}; do
  size=$(curl -sk -o /dev/null -w '%{size_download}' "https://127.0.0.1:$port$page")
  [ "$size" = 8800 ] || { echo "port $port served the page with $size bytes" >&2; exit 1; }
done

# h2 PID URL CONNS STREAMS [h2load options...] -> rps p50 p99 cpu/1k bytes/resp cipher
h2() {
  local pid=$1 url=$2 c=$3 m=$4 before after out reqs bytes cipher
  shift 4
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 h2load -c"$c" -m"$m" -D "$secs" --log-file="$tmp/h2.log" "$@" "$url" 2>&1)
  after=$(cpu_ticks "$pid")
  reqs=$(awk '/^requests:/ {print $8}' <<<"$out") # succeeded
  grep -q "0 failed, 0 errored" <<<"$out" || { echo "h2load reported failures:" >&2; grep "^requests:" <<<"$out" >&2; }
  bytes=$(awk '/^traffic:/ {print $2}' <<<"$out" | awk -v n="$reqs" '{ v=$1; m=1; if (v ~ /KB$/) m=1024; else if (v ~ /MB$/) m=1048576; else if (v ~ /GB$/) m=1073741824; sub(/[KMG]?B$/,"",v); printf "%.0f", v*m/n }')
  cipher=$(awk '/^Cipher:/ {print $2}' <<<"$out")
  echo "$(awk '/^finished in/ {print $4}' <<<"$out") $(h2_percentiles "$tmp/h2.log") $(cpu_per_1k $((after - before)) "$reqs") $bytes $cipher"
}
# h1 PID URL -> rps p50 p99 cpu/1k (wrk, 32 connections: run_wrk of benches/common.sh)
h1() { run_wrk "$2" 32 "$1"; }

declare -A pid_of=([frontdoor]=$fd_pid [nginx]=$ngx_worker [haproxy]=$hap_pid)
declare -A port_of=([frontdoor]=$fd [nginx]=$ngx [haproxy]=$hap)
declare -A asset_pid_of=([frontdoor]=$fd_pid [nginx]=$ngx_worker [haproxy]=$hap_asset_pid)
declare -A asset_port_of=([frontdoor]=$fd [nginx]=$ngx [haproxy]=$hap_asset)
proxies="frontdoor nginx haproxy"
if [ -n "$baseline" ]; then
  proxies="frontdoor before nginx haproxy"
  pid_of[before]=$fdb_pid; port_of[before]=$fdb; asset_pid_of[before]=$fdb_pid; asset_port_of[before]=$fdb
fi
page_proxies="$proxies"
if [ -n "$bare_pid" ]; then
  page_proxies="$proxies bare"; pid_of[bare]=$bare_pid; port_of[bare]=$barep
fi
declare -A cipher_of
for round in $(seq "$rounds"); do
  echo "round $round/$rounds ..." >&2
  for p in $page_proxies; do record "page_h2_$p" "$(h2 "${pid_of[$p]}" "https://127.0.0.1:${port_of[$p]}$page" 32 10)"; done
  for p in $page_proxies; do record "page_h1_$p" "$(h1 "${pid_of[$p]}" "https://127.0.0.1:${port_of[$p]}$page")"; done
  for p in $proxies; do
    row=$(h2 "${asset_pid_of[$p]}" "https://127.0.0.1:${asset_port_of[$p]}$asset" 16 4 -H "accept-encoding: $chrome")
    record "asset_h2_$p" "$row"; cipher_of[$p]=$(col 6 <<<"$row")
  done
  record asset_h2_frontdoor_aes128 "$(h2 "$fd_pid" "https://127.0.0.1:$fd$asset" 16 4 -H "accept-encoding: $chrome" --tls13-ciphers=TLS_AES_128_GCM_SHA256)"
  record asset_h2_frontdoor_aes256 "$(h2 "$fd_pid" "https://127.0.0.1:$fd$asset" 16 4 -H "accept-encoding: $chrome" --tls13-ciphers=TLS_AES_256_GCM_SHA384)"
done
links_after=$(preloads "$fd")
parsed=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^frontdoor_hints_total\{kind="learned_update"/ {s+=$2} END {print s+0}')

med() { col "$2" <<<"${results[$1]}" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo
echo "compare: $rounds round(s) of ${secs}s, medians; frontdoor = $bin (profile '$profile')${baseline:+, before = $baseline}; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "page: $page, $(stat -c %s "$tmp/origin/page.html") bytes; frontdoor Link preloads on it: $links_after; asset: $asset, $(stat -c %s "$tmp/public$asset.br") bytes br"
printf "%-22s %-10s %10s %9s %9s %14s\n" workload proxy req/s p50_ms p99_ms cpu_ms/1k_req
for w in page_h2 page_h1 asset_h2; do
  ps=$page_proxies; [ "$w" = asset_h2 ] && ps=$proxies
  for p in $ps; do
    printf "%-22s %-10s %10s %9s %9s %14s\n" "$w" "$p" "$(med "${w}_$p" 1)" "$(med "${w}_$p" 2)" "$(med "${w}_$p" 3)" "$(med "${w}_$p" 4)"
  done
done
for c in aes128 aes256; do
  printf "%-22s %-10s %10s %9s %9s %14s\n" "asset_h2 ($c only)" frontdoor "$(med "asset_h2_frontdoor_$c" 1)" "$(med "asset_h2_frontdoor_$c" 2)" "$(med "asset_h2_frontdoor_$c" 3)" "$(med "asset_h2_frontdoor_$c" 4)"
done
echo
echo "frontdoor CPU per request / theirs:"
for w in page_h2 page_h1 asset_h2; do
  f=$(med "${w}_frontdoor" 4)
  printf "  %-10s  vs nginx %5s   vs HAProxy %5s" "$w" "$(ratio "$f" "$(med "${w}_nginx" 4)")" "$(ratio "$f" "$(med "${w}_haproxy" 4)")"
  [ -n "$baseline" ] && printf "   vs before %5s   (before vs nginx %5s, vs HAProxy %5s)" "$(ratio "$f" "$(med "${w}_before" 4)")" \
    "$(ratio "$(med "${w}_before" 4)" "$(med "${w}_nginx" 4)")" "$(ratio "$(med "${w}_before" 4)" "$(med "${w}_haproxy" 4)")"
  echo
done
if [ -n "$bare_pid" ]; then
  echo "bare Pingora CPU per page / theirs (the floor under frontdoor), and frontdoor / bare Pingora:"
  for w in page_h2 page_h1; do
    b=$(med "${w}_bare" 4)
    printf "  %-10s  vs nginx %5s   vs HAProxy %5s   frontdoor / bare %5s\n" "$w" "$(ratio "$b" "$(med "${w}_nginx" 4)")" \
      "$(ratio "$b" "$(med "${w}_haproxy" 4)")" "$(ratio "$(med "${w}_frontdoor" 4)" "$b")"
  done
fi
echo "TLS 1.3 cipher each negotiated with h2load's default offer: frontdoor ${cipher_of[frontdoor]}, nginx ${cipher_of[nginx]}, HAProxy ${cipher_of[haproxy]}"
echo "frontdoor learned-hint updates during the run: $parsed"

if [ "$overload" = 1 ]; then
  # Each proxy's server is stopped first: the overload run pins its own on core 0.
  for p in "$fd_pid" "$ngx_pid" "$hap_pid" "$hap_asset_pid" $fdb_pid $bare_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  echo
  echo "overload (benches/overload.sh $quick --profile $profile), $rounds run(s), medians:"
  declare -A over
  for round in $(seq "$rounds"); do
    echo "overload run $round/$rounds ..." >&2
    out=$(bash benches/overload.sh $quick --profile "$profile" --bin "$bin" "${gen[@]}" 2>/dev/null)
    while IFS= read -r line; do
      name=${line%%: *}; json=${line#*: }
      case "$name" in
        capacity) over[capacity]+="$(jq -r .app_per_s <<<"$json")"$'\n' ;;
        frontdoor|frontdoor-defaults|haproxy|nginx)
          over[$name]+="$(jq -r '"\(.goodput_per_s) \(.ok_p50_ms) \(.ok_p99_ms) \(.shed_share) \(.critical_success) \(.healthz_p99_ms)"' <<<"$json")"$'\n' ;;
      esac
    done <<<"$out"
  done
  cap=$(median <<<"${over[capacity]}")
  echo "app capacity (4 connections straight to the simulator): $cap req/s; promise: ok p99 <= service 25 ms + 2 x target 20 ms = 65 ms"
  printf "%-20s %9s %9s %9s %9s %9s %9s %9s\n" proxy goodput of_cap ok_p50 ok_p99 shed critical healthz99
  for p in frontdoor frontdoor-defaults haproxy nginx; do
    rows=${over[$p]:-}
    [ -n "$rows" ] || continue
    g=$(col 1 <<<"$rows" | median)
    printf "%-20s %9s %9s %9s %9s %9s %9s %9s\n" "$p" "$g" "$(awk -v g="$g" -v c="$cap" 'BEGIN {printf "%.0f%%", 100 * g / c}')" \
      "$(col 2 <<<"$rows" | median)" "$(col 3 <<<"$rows" | median)" "$(col 4 <<<"$rows" | median)" "$(col 5 <<<"$rows" | median)" "$(col 6 <<<"$rows" | median)"
  done
fi
