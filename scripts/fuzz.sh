#!/usr/bin/env bash
# Builds paci's libFuzzer targets with clang++ (ASan + UBSan) in build/fuzz and runs each for a bounded
# time, PACI_FUZZ_SECONDS apiece (default 60):
#   csv  the PyTorch CSV importer (tests/fuzz/csv_fuzz.cpp), seeds tests/fuzz/corpus, dictionary csv.dict;
#   api  every public analysis, simulation, export and planning function on fuzzed policies, cost
#        models and schedules (tests/fuzz/api_fuzz.cpp), seeds tests/fuzz/api_corpus.
# PACI_FUZZERS="csv api" chooses which. Past findings, tests/fuzz/findings/<name>/, are replayed first.
# The kept corpora are read, never written, unless
# PACI_FUZZ_KEEP=1, which merges what the run found into them (libFuzzer -merge=1 keeps only inputs
# that add coverage). Inputs a run finds go to build/fuzz/corpus/<name>, a crashing input to
# build/fuzz/<name>-crash-* (copy it to tests/fuzz/findings/ to keep it). Each fuzzer's executions per
# second and run time are printed at the end. Exits non-zero on any finding. PACI_FUZZ_BUILD_DIR
# (default build/fuzz) names another build directory.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${PACI_FUZZ_SECONDS:-60}"
fuzzers="${PACI_FUZZERS:-csv api}"
jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
build="${PACI_FUZZ_BUILD_DIR:-build/fuzz}"

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

CXX=clang++ cmake -S . -B "${build}" -G Ninja \
  -DPACI_BUILD_FUZZERS=ON -DPACI_BUILD_BENCHMARKS=OFF -DPACI_BUILD_EXAMPLES=OFF >/dev/null
targets=()
for name in $fuzzers; do targets+=("paci_${name}_fuzz"); done
cmake --build "${build}" --target "${targets[@]}" -j "${jobs}"

summary=()
status=0
for name in $fuzzers; do
  seeds="tests/fuzz/${name}_corpus"
  dict=()
  if [ "$name" = csv ]; then seeds=tests/fuzz/corpus; fi
  if [ -f "tests/fuzz/${name}.dict" ]; then dict=(-dict="tests/fuzz/${name}.dict"); fi
  mkdir -p "${build}/corpus/${name}" "$seeds"
  log="${build}/${name}.log"
  echo "fuzz: running paci_${name}_fuzz for ${seconds} s (log: ${log})"
  rc=0
  mkdir -p "tests/fuzz/findings/${name}"
  "${build}/bin/paci_${name}_fuzz" "${build}/corpus/${name}" "$seeds" "tests/fuzz/findings/${name}" "${dict[@]}" \
    -max_total_time="${seconds}" \
    -max_len=4096 \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -artifact_prefix="${build}/${name}-" \
    -print_final_stats=1 >"$log" 2>&1 || rc=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "fuzz: paci_${name}_fuzz found a problem (exit ${rc}):" >&2
    grep -E 'runtime error|ERROR:|paci api fuzz|SUMMARY|Test unit written' "$log" | head -20 >&2 || tail -30 "$log" >&2
  fi
  if [ "$rc" -eq 0 ]; then
    summary+=("paci_${name}_fuzz: ${runs:-?} executions in ${seconds} s, ${rate:-?} exec/s, no finding")
  else
    summary+=("paci_${name}_fuzz: stopped by a finding after ${runs:-?} executions (exit ${rc}; see ${log})")
  fi
  if [ "${PACI_FUZZ_KEEP:-0}" = 1 ] && [ "$rc" -eq 0 ]; then
    "${build}/bin/paci_${name}_fuzz" -merge=1 "$seeds" "${build}/corpus/${name}" >/dev/null 2>&1
    echo "fuzz: merged into ${seeds} ($(find "$seeds" -type f | wc -l) inputs)"
  fi
done
printf 'fuzz: %s\n' "${summary[@]}"
exit "$status"
