# Helpers shared by the load scripts (sourced, not run). Defines $tmp (removed on exit, with
# every process whose pid is added to `pids`), port helpers, CPU accounting and medians.

tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx workers run as nobody and must read files below it
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

# A free loopback port below the kernel's ephemeral range (32768+), so that no client socket,
# nor its TIME_WAIT, can hold it when the server binds.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# Waits up to 10 s for a listener; on failure shows what ran and the servers' error logs.
wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done
  echo "port $1 never opened" >&2
  ps aux | grep -E "frontdoor|nginx" | grep -v grep >&2
  cat "$tmp"/*.err "$tmp"/nginx/error.log 2>/dev/null >&2
  exit 1
}

# User + system CPU of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
clk=$(getconf CLK_TCK)
# cpu_per_1k TICKS REQUESTS: CPU milliseconds per 1,000 requests.
cpu_per_1k() { awk -v t="$1" -v c="$clk" -v n="$2" 'BEGIN { printf "%.1f", t / c * 1000 / n * 1000 }'; }

# wrk's "314.00us" / "1.23ms" / "2.00s" in milliseconds.
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 } printf "%.3f", v }' <<<"$1"; }
# "38.72MB" in bytes.
to_bytes() { awk '{ v=$1; m=1; if (v ~ /KB$/) m=1024; else if (v ~ /MB$/) m=1048576; else if (v ~ /GB$/) m=1073741824; sub(/[KMG]?B$/,"",v); printf "%.0f", v*m }' <<<"$1"; }

# run_wrk URL CONNECTIONS PID-or-empty: a closed-loop wrk run of $secs seconds on core 1 (one
# thread); prints "rps p50_ms p99_ms", plus the CPU per 1,000 requests of PID when given.
# Non-2xx answers and socket errors are reported on stderr.
run_wrk() { # URL CONNECTIONS PID-or-empty
  local before after out rps p50 p99 reqs
  [ -n "$3" ] && before=$(cpu_ticks "$3")
  out=$(taskset -c 1 wrk -t1 -c"$2" -d"${secs}s" --latency "$1")
  [ -n "$3" ] && after=$(cpu_ticks "$3")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then echo "wrk reported errors:" >&2; grep "Non-2xx\|Socket errors" <<<"$out" >&2; fi
  if [ -n "$3" ]; then echo "$rps $p50 $p99 $(cpu_per_1k $((after - before)) "$reqs")"
  else echo "$rps $p50 $p99"; fi
}

median() { grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$1" '{print $c}'; }
# p50 and p99 (ms) of h2load's --log-file (third column: microseconds per request).
h2_percentiles() { awk '{print $3 / 1000}' "$1" | sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f", a[int(NR*0.5)+1], a[int(NR*0.99)+1]}'; }

declare -A results
# record NAME "row": appends one round's measurements; summaries take medians per column.
record() { results["$1"]+="$2"$'\n'; }

# nginx_temp_paths: the http-block lines that keep nginx's temp files inside $tmp.
nginx_temp_paths() {
  for kind in client_body proxy fastcgi uwsgi scgi; do echo "  ${kind}_temp_path $tmp/nginx/$kind;"; done
}

# fd_head THREADS HTTPS_PORT ADMIN_PORT: the [server], [listen] and certificate tables the load
# scripts' frontdoor configs start with (cert.pem and key.pem beside the config, in $tmp).
fd_head() {
  cat <<TOML
[server]
threads = $1
grace-period = "0s"
graceful-shutdown-timeout = "1s"
access-log = "off"
[listen]
https = "127.0.0.1:$2"
admin = "127.0.0.1:$3"
[[tls.certificates]]
cert = "cert.pem"
key = "key.pem"
TOML
}

# The page of benches/compare.sh and benches/profile.sh: 8,800 bytes of HTML whose head
# references a stylesheet and six fingerprinted scripts (what learned hints read).
page=/courses/mit/physics
# start_page_origin PORT: writes the page to $tmp/origin/page.html and serves it at $page from
# nginx on core 1 (one worker, plain HTTP/1.1 keep-alive, access log off): the fast origin.
start_page_origin() {
  mkdir -p "$tmp/origin" "$tmp/origin-nginx" "$tmp/nginx"
  {
    printf '<!doctype html>\n<html><head><meta charset="utf-8"><title>Physics - MIT</title>\n'
    printf '<link rel="stylesheet" href="/assets/application-3f2a9c1b7d4e6f80.css">\n'
    for name in vendor charts player quiz grades application; do
      printf '<script src="/assets/%s-%s.js"></script>\n' "$name" "$(printf %s "$name" | sha256sum | cut -c1-16)"
    done
    printf '</head><body><main><h1>Physics</h1>\n'
    for i in $(seq 60); do
      printf '<section><h2>Lecture %d</h2><p>Notes, problem sets and the recording of lecture %d.</p></section>\n' "$i" "$i"
    done
  } > "$tmp/origin/page.html"
  # Padded to 8,800 bytes with a comment: "<!-- " + pad + " -->" + the 22-byte tail.
  local pad=$((8800 - $(stat -c %s "$tmp/origin/page.html") - 9 - 22))
  { printf '<!-- %s -->' "$(head -c "$pad" /dev/zero | tr '\0' x)"; printf '</main></body></html>\n'; } >> "$tmp/origin/page.html"
  cat > "$tmp/origin-nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/origin-nginx/nginx.pid;
error_log $tmp/origin-nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
$(nginx_temp_paths)
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$1;
    location = $page { default_type text/html; alias $tmp/origin/page.html; }
  }
}
CONF
  taskset -c 1 nginx -p "$tmp/origin-nginx" -c "$tmp/origin-nginx/nginx.conf" & pids+=($!)
  wait_port "$1"
}

# hit_config HTTPS_PORT ADMIN_PORT SIM_PORT KIND: the hit-path scripts' frontdoor config (one
# thread): /assets/... from the simulator as an asset route (KIND=assets) or an edge-cache route
# (KIND=cache: the app's `public, max-age=3600` makes the file storable).
hit_config() {
  fd_head 1 "$1" "$2"; cat <<TOML
[pools.app]
backends = ["127.0.0.1:$3"]
[[routes]]
name = "assets"
path = "/assets/{file*}"
pool = "app"
TOML
  if [ "$4" = assets ]; then printf '[routes.assets]\nsource = "upstream"\n'; else printf '[routes.cache]\n'; fi
}

# wait_br URL: asks for URL with `Accept-Encoding: br` until it is answered Brotli-encoded (the
# first request fills, the variant is made in the background); fails after 20 s.
wait_br() {
  local enc=""
  for _ in $(seq 100); do
    enc=$(curl -sk -o /dev/null -D - -H "accept-encoding: br" "$1" |
      tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')
    [ "$enc" = "br" ] && return 0
    sleep 0.2
  done
  echo "$1 was never served br" >&2
  return 1
}
