#!/usr/bin/env bash
# Resident memory of frontdoor holding ~256 MiB of assets, against the bytes the cache says it
# holds. A directory source with what a Rails `public/assets` holds: JS/CSS bundles (stored as
# identity + gzip + Brotli 11) and images (stored as they are). Every asset is requested once,
# the script waits until every Brotli variant is done, then reads the byte gauge and
# /proc/PID/status (VmRSS, VmHWM); a second pass over every asset with Brotli shows serving
# adds nothing.
#
#   bash benches/assets_memory.sh            # ~256 MiB held
#   bash benches/assets_memory.sh --quick    # ~32 MiB held
set -euo pipefail
cd "$(dirname "$0")/.."

scale=8
if [ "${1:-}" = "--quick" ]; then scale=1; fi

bash .ci/setup curl:curl python3:python3
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/frontdoor"
source benches/common.sh

# Per scale unit: 12 bundles of 400 KB of JS-like text (~4:1 under Brotli) and 48 images of
# 500 KB that do not compress: ~32 MiB held.
python3 - "$tmp/public/assets" "$scale" <<'PY'
import os, random, sys
root, scale = sys.argv[1], int(sys.argv[2])
os.makedirs(root, exist_ok=True)
rng = random.Random(7)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 12))) for _ in range(6000)]
for i in range(12 * scale):
    out, size = [], 0
    while size < 400_000:
        line = "function %s(%s){return %s.%s(%d)}\n" % (rng.choice(words), rng.choice(words), rng.choice(words), rng.choice(words), rng.randint(0, 99999))
        out.append(line); size += len(line)
    name = "bundle%d-%016x.js" % (i, rng.getrandbits(64))
    open(os.path.join(root, name), "w").write("".join(out))
for i in range(48 * scale):
    name = "image%d-%016x.png" % (i, rng.getrandbits(64))
    open(os.path.join(root, name), "wb").write(os.urandom(500_000))
PY
bundles=$(ls "$tmp/public/assets" | grep -c '\.js$' || true)
files_bytes=$(du -sb "$tmp/public/assets" | cut -f1)

https=$(free_port); admin=$(free_port)
"$bin" dev-cert "$tmp/cert.pem" "$tmp/key.pem" >/dev/null
{ fd_head 1 "$https" "$admin"; cat <<TOML
[cache]
assets-capacity = "1GiB"
compression-threads = 2
[pools.app]
backends = ["127.0.0.1:9"]
[[routes]]
name = "assets"
path = "/assets/{file*}"
pool = "app"
[routes.assets]
source = "public"
TOML
} > "$tmp/fd.toml"
RUST_LOG=warn "$bin" run "$tmp/fd.toml" 2>"$tmp/fd.err" & fd_pid=$!; pids+=($fd_pid)
wait_port "$https"
metric() { curl -s "http://127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$fd_pid/status"; }

# Baseline: started, one request served.
curl -sk -o /dev/null "https://127.0.0.1:$https/assets/none-0123456789abcdef.js" || true
base_rss=$(kib VmRSS)

# Fill: every asset once, over one keep-alive connection.
for f in $(ls "$tmp/public/assets"); do
  printf 'url = "https://127.0.0.1:%s/assets/%s"\noutput = "/dev/null"\n' "$https" "$f"
done > "$tmp/urls"
start=$(date +%s)
curl -sk --http1.1 -H "accept-encoding: br" -K "$tmp/urls"
for _ in $(seq 1200); do
  done_br=$(metric 'frontdoor_asset_compressions_total{encoding="br"}'); done_br=${done_br:-0}
  [ "${done_br%.*}" -ge "$bundles" ] && break; sleep 0.5
done
fill_secs=$(( $(date +%s) - start ))
held=$(metric frontdoor_asset_cache_bytes)
rss=$(kib VmRSS); hwm=$(kib VmHWM)

# Serve everything again, Brotli where there is one.
curl -sk --http1.1 -H "accept-encoding: br" -K "$tmp/urls"
# Tokio's blocking threads (file reads, compression) exit after 10 s idle, and with them
# the compressors' working memory their allocator heaps kept.
sleep 12; rss_after=$(kib VmRSS)

awk -v files="$files_bytes" -v held="$held" -v base="$base_rss" -v rss="$rss" -v hwm="$hwm" \
    -v after="$rss_after" -v n="$(ls "$tmp/public/assets" | wc -l)" -v b="$bundles" -v s="$fill_secs" 'BEGIN {
  mib = 1048576
  printf "assets: %d files (%d bundles), %.1f MiB on disk; filled and compressed in %d s\n", n, b, files / mib, s
  printf "bytes held (frontdoor_asset_cache_bytes): %.1f MiB\n", held / mib
  printf "RSS at start: %.1f MiB; after the fill: %.1f MiB (peak %.1f MiB); after serving all again and 12 s idle: %.1f MiB\n", base / 1024, rss / 1024, hwm / 1024, after / 1024
  printf "RSS growth / bytes held: %.3f right after the fill, %.3f settled\n", (rss - base) * 1024 / held, (after - base) * 1024 / held
}'
