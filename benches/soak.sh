#!/usr/bin/env bash
# The long soak (issue 8): tests/it/soak.rs run against the release binary for 10 minutes at a
# steady mixed load (assets, pages, JSON, offloads over HTTP/2 and HTTP/1.1) with a config
# reload every 30 s and one of the two app nodes restarted halfway. Prints the run's tally and
# an RSS / open-descriptor sample every 10 s; fails like the test does (a failed request that
# was not shed, a lost job, a rejected reload, descriptors above the baseline, RSS growth).
# CI runs the same test bounded to 30 s (`cargo test --test it soak::`).
#
#   bash benches/soak.sh                       # 600 s at 100 req/s
#   SECS=120 RATE=200 bash benches/soak.sh     # other length or rate
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/setup
cargo build --release --locked --quiet
export FRONTDOOR_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/frontdoor"
export FRONTDOOR_SOAK_SECS="${SECS:-600}"
export FRONTDOOR_SOAK_RELOAD_SECS="${RELOAD_SECS:-30}"
export FRONTDOOR_SOAK_RATE="${RATE:-100}"
export FRONTDOOR_SOAK_SAMPLE_SECS="${SAMPLE_SECS:-10}"
cargo test --locked --test it soak:: -- --nocapture
