#!/usr/bin/env bash
# A cold course page in a real browser: Lighthouse (npm `lighthouse`, performance category,
# default simulated throttling: Lantern's slow-4G model) in Debian's headless Chromium, against
#   (a) the simulator directly: HTTP/1.1, no compression, six blocking scripts, then four JSON
#       fetches (the "before");
#   (b) frontdoor (release build) in front of it with everything on: h2, assets from memory
#       with Brotli, dynamic compression, preload hints for the four JSON documents and the
#       learned assets, 103 Early Hints (HTTP/1.1 clients), script deferral (the "after");
#   (c) frontdoor with the same config less every hint (no [routes.hints], learning off), to
#       tell what the hints add to h2 and Brotli.
# Prints medians over the runs of Largest Contentful Paint, when course.json finished (observed,
# from the network-requests audit, ms after the page's first request) and bytes transferred.
#
#   bash benches/lighthouse.sh        # 5 runs each
#   bash benches/lighthouse.sh 3      # 3 runs each
#
# Installs (as root, or with sudo) Debian's `chromium` and, into target/lighthouse, npm's
# `lighthouse`; nothing downloads a browser of its own. Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
if ! command -v chromium >/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
if ! command -v npm >/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
lh_dir="${CARGO_TARGET_DIR:-target}/lighthouse"
if [ ! -x "$lh_dir/node_modules/.bin/lighthouse" ]; then
  mkdir -p "$lh_dir"
  # Lighthouse drives the Chromium it is given; puppeteer-core never downloads one.
  PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --prefix "$lh_dir" lighthouse@12.8.2 >/dev/null
fi
lighthouse="$lh_dir/node_modules/.bin/lighthouse"
export CHROME_PATH
CHROME_PATH=$(command -v chromium)

cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/frontdoor"
source benches/common.sh

sim=$(free_port); https=$(free_port); admin=$(free_port); https2=$(free_port); admin2=$(free_port)
"$bin" simulate --listen "127.0.0.1:$sim" >"$tmp/sim.out" 2>"$tmp/sim.err" & pids+=($!)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
wait_port "$sim"

{ fd_head 2 "$https" "$admin"; cat <<TOML
[pools.app]
backends = ["127.0.0.1:$sim"]
[[routes]]
name = "course"
path = "/courses/{school}/{title}"
pool = "app"
[routes.hints]
preload = [
  { href = "/courses/{school}/{title}/course.json", as = "fetch" },
  { href = "/courses/{school}/{title}/users.json", as = "fetch" },
  { href = "/courses/{school}/{title}/timeline.json", as = "fetch" },
  { href = "/courses/{school}/{title}/campaigns.json", as = "fetch" },
]
early-hints = true
[routes.hints.defer-scripts]
[[routes]]
name = "assets"
path = "/assets/{file*}"
pool = "app"
[routes.assets]
source = "upstream"
[[routes]]
name = "app"
path = "/{rest*}"
pool = "app"
TOML
} > "$tmp/fd.toml"
RUST_LOG=warn "$bin" run "$tmp/fd.toml" 2>"$tmp/fd.err" & pids+=($!)
# (c): the same less the hints section and with learning off.
awk '/^\[routes.hints\]/ {skip=1; next} /^\[\[routes\]\]/ {skip=0} !skip' "$tmp/fd.toml" |
  sed -e "s/127.0.0.1:$https/127.0.0.1:$https2/" -e "s/127.0.0.1:$admin/127.0.0.1:$admin2/" \
      -e 's/^pool = "app"$/pool = "app"\n[routes.hints]\nlearn = false/' > "$tmp/plain.toml"
RUST_LOG=warn "$bin" run "$tmp/plain.toml" 2>"$tmp/plain.err" & pids+=($!)
wait_port "$https"; wait_port "$https2"

page="/courses/mit/physics"
# Warm frontdoor as a deployed one would be: the page seen once (learned hints), every asset in
# memory with its Brotli variant ready. The browser's cache stays cold (Lighthouse clears it).
for port in "$https" "$https2"; do
  curl -sk -o /dev/null "https://127.0.0.1:$port$page"
  for asset in $(curl -s "http://127.0.0.1:$sim$page" | grep -o '/assets/[a-z]*-[0-9a-f]*\.\(js\|css\)'); do
    for _ in $(seq 100); do
      enc=$(curl -sk -o /dev/null -D - -H "accept-encoding: br" "https://127.0.0.1:$port$asset" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')
      [ "$enc" = "br" ] && break; sleep 0.2
    done
  done
done

flags="--headless --no-sandbox --disable-gpu --disable-background-networking --ignore-certificate-errors"
# measure NAME URL: one Lighthouse run; appends "lcp_ms course_json_end_ms bytes" to results.
measure() {
  local out="$tmp/$1-$2.json"
  "$lighthouse" "$3" --quiet --only-categories=performance --output=json --output-path="$out" \
    --chrome-flags="$flags" >/dev/null 2>"$tmp/lh.err" || { cat "$tmp/lh.err" >&2; exit 1; }
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    if (r.runtimeError) { console.error(r.runtimeError); process.exit(1); }
    const items = r.audits["network-requests"].details.items;
    const start = Math.min(...items.map(i => i.networkRequestTime));
    const course = items.find(i => i.url.endsWith("/course.json"));
    const lcp = r.audits["largest-contentful-paint"].numericValue;
    const bytes = r.audits["total-byte-weight"].numericValue;
    console.log([lcp, course ? course.networkEndTime - start : NaN, bytes].map(Math.round).join(" "));
  ' "$out"
}
for i in $(seq "$runs"); do
  record direct "$(measure direct "$i" "http://127.0.0.1:$sim$page")"
  record frontdoor "$(measure frontdoor "$i" "https://127.0.0.1:$https$page")"
  record no-hints "$(measure no-hints "$i" "https://127.0.0.1:$https2$page")"
done

printf '%-10s %10s %18s %12s\n' "" "LCP ms" "course.json ms" "bytes"
for name in direct frontdoor no-hints; do
  rows="${results[$name]}"
  printf '%-10s %10s %18s %12s\n' "$name" \
    "$(col 1 <<<"$rows" | median)" "$(col 2 <<<"$rows" | median)" "$(col 3 <<<"$rows" | median)"
done
echo "runs: $runs each"
for name in direct frontdoor no-hints; do echo "$name:"; echo -n "${results[$name]}"; done
