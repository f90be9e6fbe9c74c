#!/usr/bin/env bash
# Everything GPU-side of paci in one command, for a machine with a GPU (target: under 5 minutes on
# one H200 with 16 cores). Steps:
#   1. configure with CMake + Ninja (Release, like the `release` preset: tests and examples on,
#      warnings not errors, since a compiler's new false positive must not stop a GPU run;
#      PACI_WITH_NCCL=ON; nvcc as the CUDA compiler), into $BUILD_DIR (default build/gpu);
#   2. build everything (tests, examples, examples/cuda's paci-cuda);
#   3. the whole ctest with -j16 (MPI, Catch2 v3 and the NCCL link test included; with a GPU,
#      nccl.link runs its GPU checks, every channel count included, and example.cuda runs
#      `paci-cuda --quick`);
#   4. the GPU programs alone, each must exit 0 (77 = "skipped: no CUDA device" counts as a failure
#      here, since a GPU is present):
#        nccl.link      paci_nccl_link: self send/receive over 1, 2 and the ring map's channels
#        nccl_self      (a) a world of one NCCL rank sends to itself; every byte checked (raw NCCL,
#                      then paci::nccl_communicator: 1 B to 64 MiB, queued sends matched by tag,
#                      FIFO order within a tag, grouped pairs)
#        nccl_pipeline  (b) a two-stage pipeline over NCCL (one GPU; two GPUs with two or more)
#                      against a double-precision host replay
#        paci-cuda      examples/cuda: a cuBLAS + CUDA-kernel stage trained with PACI and
#                      1F1B-flush, one GPU in process and one process per GPU over NCCL; its
#                      checks, then its timings (executor overhead per action, PACI vs 1F1B-flush
#                      samples/s on 4 stages of one GPU)
#
# Usage: tests/gpu/run.sh [--build-only]
# Environment: CUDA_HOME (default /usr/local/cuda), NCCL_HOME (hint for cmake/FindNCCL.cmake;
#   default: searched as FindNCCL does, /usr included), BUILD_DIR (default build/gpu), JOBS (default
#   16), CTEST_JOBS (default 16), TIMEOUT per GPU program (default 240 s), CMAKE_ARGS (more
#   configure arguments, e.g. -DCMAKE_CUDA_ARCHITECTURES=90).
# Exit status: 0 when everything built and every test and check passed; 1 on a failure; 2 when no
# GPU is visible (everything was built, nothing was run).
set -euo pipefail
cd "$(dirname "$0")/../.."

cuda="${CUDA_HOME:-/usr/local/cuda}"
out="${BUILD_DIR:-build/gpu}"
jobs="${JOBS:-16}"
ctest_jobs="${CTEST_JOBS:-16}"
limit="${TIMEOUT:-240}"
start=$SECONDS

nccl_hint=()
[[ -n "${NCCL_HOME:-}" ]] && nccl_hint=(-DNCCL_ROOT="$NCCL_HOME")

echo "== configure $out (CUDA: $cuda)"
# shellcheck disable=SC2086 # CMAKE_ARGS is a list of arguments
cmake -S . -B "$out" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DPACI_BUILD_TESTS=ON -DPACI_BUILD_EXAMPLES=ON -DPACI_BUILD_BENCHMARKS=OFF -DPACI_WERROR=OFF \
  -DPACI_WITH_NCCL=ON \
  -DCUDAToolkit_ROOT="$cuda" -DCMAKE_CUDA_COMPILER="$cuda/bin/nvcc" \
  "${nccl_hint[@]}" ${CMAKE_ARGS:-}

echo "== build ($jobs jobs)"
cmake --build "$out" -j "$jobs"

# The two standalone NCCL programs (they predate the CMake build; built straight with the compilers).
cxx="${CXX:-g++}"
includes=(-Iinclude -I"$cuda/include")
libs=()
for dir in "${NCCL_HOME:-$cuda}/lib64" "${NCCL_HOME:-$cuda}/lib" "$cuda/lib64"; do
  # shellcheck disable=SC2054 # the commas belong to the linker flag
  [[ -d "$dir" ]] && libs+=(-L"$dir" -Wl,-rpath,"$dir")
done
[[ -n "${NCCL_HOME:-}" && -f "$NCCL_HOME/include/nccl.h" ]] && includes+=(-I"$NCCL_HOME/include")
libs+=(-lnccl -lcudart -lpthread)
nvcc_libs=()
for flag in "${libs[@]}"; do
  case "$flag" in
    -Wl,*) nvcc_libs+=(-Xlinker "${flag#-Wl,}") ;;
    *) nvcc_libs+=("$flag") ;;
  esac
done
arch="${NVCC_ARCH:--gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_75,code=compute_75}"
"$cxx" -std=c++20 -O2 -Wall -Wextra -Werror "${includes[@]}" tests/gpu/nccl_self.cpp "${libs[@]}" -o "$out/nccl_self" &
self_pid=$!
# shellcheck disable=SC2086 # $arch is a list of flags
"$cuda/bin/nvcc" -std=c++20 -O2 $arch -Xcompiler=-Wall,-Wextra,-Werror "${includes[@]}" tests/gpu/nccl_pipeline.cu \
  "${nvcc_libs[@]}" -o "$out/nccl_pipeline" &
pipeline_pid=$!
wait "$self_pid"
wait "$pipeline_pid"
echo "== built in $((SECONDS - start)) s"

if [[ ! -x "$out/bin/paci-cuda" ]]; then
  echo "tests/gpu/run.sh: $out/bin/paci-cuda was not built: examples/CMakeLists.txt must add_subdirectory(cuda)," \
       "and configure must find nvcc, NCCL and cuBLAS (see the configure output)" >&2
  exit 1
fi

if [[ "${1:-}" == "--build-only" ]]; then
  exit 0
fi
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "tests/gpu/run.sh: nvidia-smi lists no GPU: built only, nothing run" >&2
  exit 2
fi
nvidia-smi -L

status=0
echo "== ctest -j$ctest_jobs (everything)"
if ! (cd "$out" && ctest -j "$ctest_jobs" --output-on-failure --timeout 300); then
  echo "== ctest FAILED" >&2
  status=1
fi

run() { # name, command...
  local name="$1"
  shift
  echo "== $name"
  local rc=0
  NCCL_DEBUG="${NCCL_DEBUG:-WARN}" timeout "$limit" "$@" || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "== $name FAILED (exit $rc; 77: it found no GPU; 124: ran past ${limit} s)" >&2
    status=1
  fi
}
run nccl.link "$out/tests/nccl/paci_nccl_link"
run nccl_self "$out/nccl_self"
run nccl_pipeline "$out/nccl_pipeline"
run paci-cuda "$out/bin/paci-cuda"

echo "== tests/gpu/run.sh: $((SECONDS - start)) s"
if [[ $status -eq 0 ]]; then
  echo "== tests/gpu/run.sh: all GPU checks passed"
fi
exit $status
