#!/usr/bin/env bash
# Sets up, builds and runs every test: the whole ctest suite in the normal build, the web app's unit and
# browser tests (scripts/web.sh test), then the whole ctest suite again built with AddressSanitizer +
# UndefinedBehaviorSanitizer (build-asan/), then a short pass of every libFuzzer harness (scripts/fuzz.sh, clang).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
scripts/web.sh setup  # npm ci in web/: the ctest suite's GPT-2 tokenizer test runs its JavaScript encoder (gpt-3-encoder)
(cd build && ctest --output-on-failure -j2)

echo "== the web app: unit and browser tests (docs/web.md) =="
scripts/web.sh test

echo "== the same suite under ASan + UBSan =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=None -DBLOCKLAB_SANITIZE=ON >/dev/null
cmake --build build-asan -j2
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j2)

echo "== the fuzz harnesses, 20 s each (scripts/fuzz.sh; docs/testing.md) =="
scripts/fuzz.sh 20
