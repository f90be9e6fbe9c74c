#!/usr/bin/env bash
# Builds and runs paci's GPU checks of the NCCL transport (paci::nccl) on a machine with a GPU.
# Standalone: no CMake, just the headers, the CUDA toolkit and NCCL.
#
#   nccl_self      (a) a world of one NCCL rank sends to itself and receives; every byte checked
#                  (raw NCCL first, then paci::nccl_communicator: sizes from 1 B to 64 MiB, queued
#                  sends matched by tag, FIFO order within a tag, grouped pairs)
#   nccl_pipeline  (b) a two-stage pipeline (both stages on one GPU, talking through NCCL) runs
#                  forward and backward over 4 micro-batches for 3 SGD steps and must match a
#                  double-precision host replay; with two or more GPUs it also runs the stages as
#                  two ranks on two GPUs, one thread each
#
# Usage: tests/gpu/run.sh [--build-only]
# Environment: CUDA_HOME (default /usr/local/cuda), NCCL_HOME (default: CUDA_HOME, then the system),
#   BUILD_DIR (default build/gpu), CXX (default g++), NVCC_ARCH (default: sm_90 code plus
#   compute_75 PTX, which the driver compiles for any newer GPU), TIMEOUT per program (default 300 s).
# Exit status: 0 when everything built and every check passed; 1 on a failure; 2 when no GPU is
# visible (nothing was run).
set -euo pipefail
cd "$(dirname "$0")/../.."

cuda="${CUDA_HOME:-/usr/local/cuda}"
nccl="${NCCL_HOME:-$cuda}"
out="${BUILD_DIR:-build/gpu}"
cxx="${CXX:-g++}"
nvcc="$cuda/bin/nvcc"
arch="${NVCC_ARCH:--gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_75,code=compute_75}"
limit="${TIMEOUT:-300}"
mkdir -p "$out"

includes=(-Iinclude -I"$cuda/include")
[[ -f "$nccl/include/nccl.h" ]] && includes+=(-I"$nccl/include")
libs=()
for dir in "$nccl/lib64" "$nccl/lib" "$cuda/lib64" "$cuda/lib"; do
  # shellcheck disable=SC2054 # the commas belong to the linker flag
  [[ -d "$dir" ]] && libs+=(-L"$dir" -Wl,-rpath,"$dir")
done
libs+=(-lnccl -lcudart -lpthread)

echo "== building into $out (CUDA: $cuda, NCCL: $nccl)"
"$cxx" -std=c++20 -O2 -Wall -Wextra -Werror "${includes[@]}" tests/gpu/nccl_self.cpp "${libs[@]}" -o "$out/nccl_self"
nvcc_libs=()
for flag in "${libs[@]}"; do
  case "$flag" in
    -Wl,*) nvcc_libs+=(-Xlinker "${flag#-Wl,}") ;;
    *) nvcc_libs+=("$flag") ;;
  esac
done
# shellcheck disable=SC2086 # $arch is a list of flags
"$nvcc" -std=c++20 -O2 $arch -Xcompiler=-Wall,-Wextra,-Werror "${includes[@]}" tests/gpu/nccl_pipeline.cu \
  "${nvcc_libs[@]}" -o "$out/nccl_pipeline"
echo "built $out/nccl_self and $out/nccl_pipeline"

if [[ "${1:-}" == "--build-only" ]]; then
  exit 0
fi

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "tests/gpu/run.sh: nvidia-smi lists no GPU: built only, nothing run" >&2
  exit 2
fi
nvidia-smi -L

status=0
for program in nccl_self nccl_pipeline; do
  echo "== $program"
  if ! NCCL_DEBUG="${NCCL_DEBUG:-WARN}" timeout "$limit" "$out/$program"; then
    echo "== $program FAILED (or ran past ${limit} s)" >&2
    status=1
  fi
done
if [[ $status -eq 0 ]]; then
  echo "== tests/gpu/run.sh: all GPU checks passed"
fi
exit $status
