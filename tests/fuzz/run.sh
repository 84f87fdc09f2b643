#!/usr/bin/env bash
# Runs frontdoor's cargo-fuzz targets one after another, each for a fixed time, starting from
# the committed seeds (with tests/fuzz/dict/<target>.dict if there is one), and prints a table
# (runs, execs/s, coverage, crashes).
#
#   bash tests/fuzz/run.sh [target...]     default: every target
#   FUZZ_SECONDS=60   time per target
#   FUZZ_MERGE=1      afterwards, add to tests/fuzz/corpus/<target>/ the new inputs that reach
#                     new coverage (libFuzzer -merge=1: a minimised addition, not everything)
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz from
# crates.io if missing. New inputs go to tests/fuzz/target/corpus/<target>/ (not committed);
# a crash is written to tests/fuzz/artifacts/<target>/ and makes the script exit 1. Add it
# under tests/fuzz/regressions/<target>/ once fixed: `cargo test --lib fuzzing` replays it.
#
# Sanitizer none: frontdoor forbids unsafe code, so what a fuzzer finds here is panics
# (including arithmetic overflow: debug assertions are on), hangs and runaway memory, which
# libFuzzer catches on its own; ASan would only slow the runs down.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-60}
dir=tests/fuzz
flags=(--fuzz-dir "$dir" --sanitizer none --debug-assertions)

cargo +nightly --version >/dev/null 2>&1 || {
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$dir")
fi

cargo +nightly fuzz build "${flags[@]}"

logs=$dir/target/logs
mkdir -p "$logs"
failed=()
summary=()
for target in "${targets[@]}"; do
  work=$dir/target/corpus/$target
  mkdir -p "$work"
  echo "fuzz: $target for ${seconds}s"
  status=0
  dict=()
  [ -f "$dir/dict/$target.dict" ] && dict=(-dict="$dir/dict/$target.dict")
  # One process (-jobs not set): the machine is shared. -timeout flags any input slower
  # than 10 s as a hang; -rss_limit_mb any that needs more than 2 GiB.
  cargo +nightly fuzz run "${flags[@]}" "$target" "$work" "$dir/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
    >"$logs/$target.log" 2>&1 || status=$?
  # The last status line: `#RUNS ... cov: N ft: N corp: N/size ... exec/s: N ...`.
  last=$(grep -E '^#[0-9]+' "$logs/$target.log" | tail -n 1 || true)
  runs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$last")
  execs=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$logs/$target.log" | tail -n 1)
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    grep -E 'panicked|ERROR: libFuzzer|Test unit written' "$logs/$target.log" | head -n 5 >&2 || true
  fi
  summary+=("$(printf '| %-16s | %5ss | %10s | %7s | %5s | %6s | %5s | %s |' \
    "$target" "$seconds" "${runs:-?}" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
    "$([ "$status" -eq 0 ] && echo none || echo "CRASH (see $logs/$target.log)")")")
  if [ "${FUZZ_MERGE:-0}" = 1 ] && [ "$status" -eq 0 ]; then
    cargo +nightly fuzz run "${flags[@]}" "$target" "$dir/corpus/$target" "$work" -- \
      -merge=1 >"$logs/$target.merge.log" 2>&1
  fi
done

echo
echo "| target           |  time |       runs | execs/s |   cov |     ft |  corp | crashes |"
echo "|------------------|-------|------------|---------|-------|--------|-------|---------|"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]}" >&2
  exit 1
fi
