#!/usr/bin/env bash
# 103 Early Hints in a real browser: Debian's headless Chromium loads a Rails-like page cold
# (benches/early_hints/app.py: 180 ms of think time, three render-blocking scripts, then a
# 300 ms JSON fetch that paints the heading) over HTTP/2 through
#   (a) frontdoor with preload hints and `early-hints = true` (103 on h2 during the think time);
#   (b) frontdoor with the same hints, no 103 (Link header on the final response only);
#   (c) nginx with the same Link header (Debian's 1.22 has no 103).
# Chromium's net log (--log-net-log) tells when the 103 arrived, when the final head arrived,
# when each preloaded request started and when course.json finished (the heading paints then);
# medians over the runs, ms after the page's request started.
#
#   bash benches/early_hints.sh        # 5 cold loads each
#   bash benches/early_hints.sh 3
#   FRONTDOOR_BIN=target/debug/frontdoor bash benches/early_hints.sh   # skip the release build
#
# Installs (as root, or with sudo) Debian's chromium and nginx when missing. Only 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
bash .ci/setup chromium:chromium nginx-light:nginx
if [ -z "${FRONTDOOR_BIN:-}" ]; then
  cargo build --release --locked --quiet
  FRONTDOOR_BIN="${CARGO_TARGET_DIR:-target}/release/frontdoor"
fi
bin=$FRONTDOOR_BIN
source benches/common.sh

app=$(free_port)
python3 benches/early_hints/app.py "$app" & pids+=($!)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
wait_port "$app"
# Chromium neither caches nor reuses (early-hints preloads included) what comes over a
# certificate error, so the test certificate is trusted by its key, not ignored.
spki=$(openssl x509 -pubkey -noout -in "$tmp/cert.pem" | openssl pkey -pubin -outform der \
  | openssl dgst -sha256 -binary | base64)

links='</assets/blocking0-0123456789abcdef.js>; rel=preload; as=script, </assets/blocking1-0123456789abcdef.js>; rel=preload; as=script, </assets/blocking2-0123456789abcdef.js>; rel=preload; as=script, </api/course.json>; rel=preload; as=fetch; crossorigin'

# frontdoor_config HTTPS ADMIN EARLY_HINTS
frontdoor_config() {
  fd_head 2 "$1" "$2"
  cat <<TOML
[pools.app]
backends = ["127.0.0.1:$app"]
[[routes]]
name = "page"
path = "/"
pool = "app"
[routes.hints]
learn = false
early-hints = $3
preload = [
  { href = "/assets/blocking0-0123456789abcdef.js", as = "script" },
  { href = "/assets/blocking1-0123456789abcdef.js", as = "script" },
  { href = "/assets/blocking2-0123456789abcdef.js", as = "script" },
  { href = "/api/course.json", as = "fetch" },
]
[[routes]]
name = "app"
path = "/{rest*}"
pool = "app"
TOML
}
fd_on=$(free_port); fd_off=$(free_port)
frontdoor_config "$fd_on" "$(free_port)" true > "$tmp/on.toml"
frontdoor_config "$fd_off" "$(free_port)" false > "$tmp/off.toml"
RUST_LOG=warn "$bin" run "$tmp/on.toml" 2>"$tmp/on.err" & pids+=($!)
RUST_LOG=warn "$bin" run "$tmp/off.toml" 2>"$tmp/off.err" & pids+=($!)

ngx=$(free_port)
mkdir -p "$tmp/nginx/logs"
cat > "$tmp/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
$(nginx_temp_paths)
  upstream app { server 127.0.0.1:$app; keepalive 16; }
  server {
    listen 127.0.0.1:$ngx ssl http2;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    location = / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      add_header Link '$links';
    }
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" & pids+=($!)
wait_port "$fd_on"; wait_port "$fd_off"; wait_port "$ngx"

# load NAME PORT RUN: one cold load (new profile, no cache) with a net log.
load() {
  local dir="$tmp/chrome-$1-$3"
  mkdir -p "$dir"
  timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --ignore-certificate-errors-spki-list="$spki" --user-data-dir="$dir/profile" \
    --log-net-log="$dir/netlog.json" --net-log-capture-mode=Default \
    --virtual-time-budget=5000 --dump-dom "https://localhost:$2/" \
    --host-resolver-rules="MAP localhost 127.0.0.1" >"$dir/dom.html" 2>/dev/null || true
  grep -q "Physics 101" "$dir/dom.html" || echo "warning: $1 run $3 did not paint the heading" >&2
  python3 benches/early_hints/netlog.py "$dir/netlog.json"
}

median() { sort -n | awk '{a[NR]=$1} END { if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); v=eval(sys.argv[2]); print('' if v is None else v)" "$1" "$2"; }

printf '%-34s %9s %13s %18s %16s\n' "ms after the page's request" "103" "final head" "first preload" "course.json done"
for target in "frontdoor, 103 on h2:$fd_on" "frontdoor, Link only:$fd_off" "nginx 1.22, Link only:$ngx"; do
  name=${target%%:*}; port=${target##*:}
  : > "$tmp/early"; : > "$tmp/final"; : > "$tmp/first"; : > "$tmp/done"
  for run in $(seq "$runs"); do
    out=$(load "${name// /_}" "$port" "$run")
    field "$out" "d['early_hints']" | grep . >> "$tmp/early" || true
    field "$out" "d['final_headers']" | grep . >> "$tmp/final" || true
    field "$out" "min(d['starts'].values()) if d['starts'] else None" | grep . >> "$tmp/first" || true
    field "$out" "d['json_done']" | grep . >> "$tmp/done" || true
  done
  early=$(median < "$tmp/early"); final=$(median < "$tmp/final"); first=$(median < "$tmp/first")
  printf '%-34s %9s %13s %18s %16s\n' "$name" "$early" "$final" "$first" "$(median < "$tmp/done")"
  if [ "$port" = "$fd_on" ]; then
    # The point of it all: the browser got the 103 and started the preloads while the app thought.
    awk -v e="$early" -v f="$final" -v p="$first" 'BEGIN { exit !(e != "-" && p != "-" && e + 0 < f + 0 && p + 0 < f + 0) }' \
      || { echo "FAIL: with 103 the preloads did not start before the final head" >&2; failed=1; }
  fi
done
exit "${failed:-0}"
