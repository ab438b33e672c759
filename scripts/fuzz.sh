#!/usr/bin/env bash
# Runs the libFuzzer harnesses (tests/fuzz/, docs/testing.md "Fuzzing") for a while each.
#   scripts/fuzz.sh [SECONDS_EACH] [NAMES...]     default: 20 s each, every harness (safetensors config api_json http_head markdown assistant tokenizer)
# Configures and builds build-fuzz/ with clang (-DBLOCKLAB_FUZZ=ON: ASan + UBSan + libFuzzer) if needed, then
# runs each harness in one process on a scratch copy of its seed corpus tests/fuzz/corpus/<name>/ (the committed
# corpus is never written), with its dictionary. Prints the executions per harness. A crash, sanitizer report,
# unexpected exception, timeout (> 10 s for one input) or out-of-memory (> 2048 MB) input is copied into
# tests/fuzz/regressions/<name>/ (ctest then replays it) and the script exits 1 after the remaining harnesses.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(safetensors config api_json http_head markdown assistant tokenizer)
seconds=${1:-20}
[ $# -gt 0 ] && shift
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${all[@]}")
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS_EACH must be a whole number, got '$seconds'" >&2; exit 2; }
for n in "${names[@]}"; do
  [[ " ${all[*]} " == *" $n "* ]] || { echo "fuzz.sh: unknown harness '$n': expected one of ${all[*]}" >&2; exit 2; }
done

scripts/setup.sh
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=None -DBLOCKLAB_FUZZ=ON >/dev/null
else
  cmake -S . -B build-fuzz >/dev/null
fi
targets=()
for n in "${names[@]}"; do targets+=("fuzz_$n"); done
mkdir -p build-fuzz/logs
cmake --build build-fuzz -j2 --target "${targets[@]}" >build-fuzz/logs/build.log 2>&1 \
  || { tail -n 40 build-fuzz/logs/build.log >&2; echo "fuzz.sh: the build failed (build-fuzz/logs/build.log)" >&2; exit 1; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/blocklab-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:allocator_may_return_null=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

failed=0
for n in "${names[@]}"; do
  work="$scratch/$n"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -R "tests/fuzz/corpus/$n/." "$work/corpus/"
  dict=()
  [ -f "tests/fuzz/$n.dict" ] && dict=("-dict=tests/fuzz/$n.dict")
  log="build-fuzz/logs/$n.log"
  rc=0
  start=$SECONDS
  # One process (no -jobs/-workers: those fork and log elsewhere); the working corpus first, so new
  # inputs go there.
  build-fuzz/fuzz_"$n" "$work/corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" >"$log" 2>&1 || rc=$?
  elapsed=$((SECONDS - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  per_s="?"
  [ -n "$execs" ] && per_s=$((execs / (elapsed > 0 ? elapsed : 1)))
  corpus=$(find "$work/corpus" -type f | wc -l)
  echo "fuzz_$n: ${execs:-?} executions in ${elapsed} s (${per_s}/s), working corpus $corpus inputs, log $log"
  artifacts=("$work"/artifacts/*)
  if [ "$rc" -ne 0 ] || [ -e "${artifacts[0]}" ]; then
    failed=1
    mkdir -p "tests/fuzz/regressions/$n"
    for a in "${artifacts[@]}"; do
      [ -e "$a" ] || continue
      cp "$a" "tests/fuzz/regressions/$n/"
      echo "fuzz_$n: FOUND $(basename "$a") -> tests/fuzz/regressions/$n/$(basename "$a")" >&2
    done
    echo "fuzz_$n: exit status $rc; the report:" >&2
    grep -E 'ERROR: |runtime error|unexpected exception|SUMMARY|^    #[0-9]+ ' "$log" | grep -v -E 'in fuzzer::|__sanitizer_print|libc_start|in _start' \
      | sed 's/ (BuildId: [0-9a-f]*)//' | head -n 24 >&2 || true
  fi
done
[ "$failed" -eq 0 ] || { echo "fuzz.sh: found crashing inputs (above); replay one with build-fuzz/fuzz_<name> FILE" >&2; exit 1; }
