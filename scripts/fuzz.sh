#!/usr/bin/env bash
# Builds paci's libFuzzer targets with clang++ (ASan + UBSan) in build/fuzz and runs the CSV importer's
# fuzzer for a bounded time: PACI_FUZZ_SECONDS (default 60). Seeds come from tests/fuzz/corpus (left
# untouched); inputs the fuzzer finds go to build/fuzz/corpus, a crashing input to build/fuzz/crash-*.
# Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${PACI_FUZZ_SECONDS:-60}"
jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

# clang++ and its libFuzzer runtime (Debian 12: clang 14, libclang-rt-14-dev).
fuzz_packages=(clang libclang-rt-14-dev)
if command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  for package in "${fuzz_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "fuzz: installing ${missing[*]}"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
fi
if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ with libFuzzer is needed (on Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi

CXX=clang++ cmake -S . -B build/fuzz -G Ninja \
  -DPACI_BUILD_FUZZERS=ON -DPACI_BUILD_BENCHMARKS=OFF -DPACI_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build/fuzz --target paci_csv_fuzz -j "${jobs}"

mkdir -p build/fuzz/corpus
echo "fuzz: running paci_csv_fuzz for ${seconds} s"
build/fuzz/bin/paci_csv_fuzz build/fuzz/corpus tests/fuzz/corpus \
  -dict=tests/fuzz/csv.dict \
  -max_total_time="${seconds}" \
  -max_len=4096 \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -artifact_prefix=build/fuzz/ \
  -print_final_stats=1
