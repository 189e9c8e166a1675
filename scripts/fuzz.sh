#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS (default 60) each and fails if any
# target finds a crash, a panic, a timeout or runs out of memory.
#
#   scripts/fuzz.sh [SECONDS]
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its sanitizer
# flags (AddressSanitizer by default; FUZZ_SANITIZER=none turns it off). Installs
# cargo-fuzz if it is absent. Seeds come from fuzz/corpus/<target>/ (kept in the repo,
# never written), tokens from fuzz/dict/<target>.dict if there is one. What libFuzzer
# finds goes to fuzz/work/corpus/<target>/, crash inputs to fuzz/artifacts/<target>/
# (both ignored by git). Reproduce a crash with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
#
# Environment: FUZZ_TARGETS="a b" runs only those targets; CARGO_TARGET_DIR, when set,
# puts the (instrumented) build in $CARGO_TARGET_DIR/fuzz, else fuzz/target.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS]  (seconds per target, default 60)" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)…"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
target_dir="${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}"
target_dir="${target_dir:-$PWD/fuzz/target}"
fuzz_opts=(--target-dir "$target_dir" --sanitizer "${FUZZ_SANITIZER:-address}")

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
started=$(date +%s)
echo "building ${#targets[@]} fuzz targets into $target_dir…"
cargo fuzz build "${fuzz_opts[@]}"
built=$(date +%s)
echo "built in $((built - started)) s"

mkdir -p fuzz/work/logs
failed=()
for target in "${targets[@]}"; do
  work="fuzz/work/corpus/$target"
  mkdir -p "$work" "fuzz/artifacts/$target"
  log="fuzz/work/logs/$target.log"
  dict=()
  [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
  echo "== $target: ${seconds} s (log: $log)"
  if cargo fuzz run "${fuzz_opts[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$log" | tail -n 2 || true
  else
    failed+=("$target")
    echo "!! $target failed; the end of its log:"
    tail -n 40 "$log"
    ls -1 "fuzz/artifacts/$target" 2>/dev/null | sed 's/^/   artifact: /'
  fi
done

finished=$(date +%s)
echo "fuzzed ${#targets[@]} targets for ${seconds} s each; total $((finished - started)) s (build $((built - started)) s)"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "no crashes"
