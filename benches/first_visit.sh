#!/usr/bin/env bash
# The first visitor after a start (issue 17): right after frontdoor starts, each fingerprinted
# asset of the simulator's course page fetched once through it with Chrome's Accept-Encoding
# (an upstream-sourced route, nothing warmed: the worst case), then again once Brotli 11 is
# ready; bytes of each against identity. Only 127.0.0.1 is used.
#
#   bash benches/first_visit.sh
#   BIN=target/debug/frontdoor bash benches/first_visit.sh   # skip the release build
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/frontdoor"
fi
bin=$BIN
source benches/common.sh
sim=$(free_port); https=$(free_port); admin=$(free_port)
"$bin" simulate --listen "127.0.0.1:$sim" >/dev/null 2>&1 & pids+=($!)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
wait_port "$sim"
{ fd_head 2 "$https" "$admin"; cat <<TOML
[pools.app]
backends = ["127.0.0.1:$sim"]
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
wait_port "$https"
assets=$(curl -s "http://127.0.0.1:$sim/courses/mit/physics" | grep -oE '/assets/[^"]+\.(js|css)' | sort -u)
total_id=0; total_first=0; total_later=0
for a in $assets; do
  id=$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$sim$a")
  first=$(curl -sk -o /dev/null -w '%{size_download} %{time_total}' -H 'accept-encoding: gzip, deflate, br, zstd' "https://127.0.0.1:$https$a")
  total_id=$((total_id+id)); total_first=$((total_first+${first%% *}))
  echo "$a identity=$id first=$first"
done
sleep 20
for a in $assets; do
  later=$(curl -sk -o /dev/null -w '%{size_download}' -H 'accept-encoding: gzip, deflate, br, zstd' "https://127.0.0.1:$https$a")
  total_later=$((total_later+later))
done
echo "TOTAL identity=$total_id first_visit=$total_first brotli11=$total_later"
