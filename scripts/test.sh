#!/usr/bin/env bash
# Builds paci and runs its tests: the dev workflow (Debug, -Werror, unit + property + compile-fail
# + package tests), ASan/UBSan, ThreadSanitizer on the threaded runtime tests, and Release (also builds the benchmarks, which it does not run), then
# fuzzes the CSV importer for PACI_FUZZ_SECONDS (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh

# Honoured by `cmake --build` and ctest when the presets name no job count.
jobs="$(nproc 2>/dev/null || echo 2)"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$jobs}"
export CTEST_PARALLEL_LEVEL="${CTEST_PARALLEL_LEVEL:-$jobs}"

cmake --workflow --preset dev
cmake --workflow --preset asan
cmake --workflow --preset tsan
cmake --workflow --preset release

# The CSV importer's libFuzzer target (clang, ASan+UBSan) for a bounded time.
PACI_FUZZ_SECONDS="${PACI_FUZZ_SECONDS:-30}" bash scripts/fuzz.sh
