#!/usr/bin/env bash
# The main job: builds paci-plan and the training demonstration in Release, then
#   1. prints every policy side by side for an 8-stage pipeline (validity, simulated time per
#      micro-batch and bubble, activation memory, weight versions, observed drift and staleness
#      against their bounds) and the planner's ranking for a memory and a drift budget;
#   2. measures PACI against 1F1B-flush on wall-clock with one MPI process per stage (2 processes,
#      `mpirun -np 2 paci-lm --mpi`; examples/lm),
#      training a character-level language model on the fortunes package's text, beside the
#      simulator's prediction for the same per-stage costs;
#   3. trains the same model in one process (one thread per stage, P = 4) with every executable
#      policy (GPipe, 1F1B-flush and PACI at a = 2, 4, 8, ZB-H1, PACI with recompute), and at P = 8
#      with 1F1B-flush and PACI for the modelled time to target; prints the table and writes
#      results/training.json and the plots results/heldout-vs-*.svg.
# Extra arguments go to the comparison of step 1 (for example --microbatches 8 --costs f=1,b=3).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh

cmake --preset release >/dev/null
cmake --build --preset release --target paci-plan paci-lm
echo
build/release/bin/paci-plan --compare --stages 8 --microbatches 16 "$@"
echo
build/release/bin/paci-plan --plan --stages 8 --microbatches 16 --memory-budget 8 --drift-budget 1
echo

mkdir -p results
lm_args=()
if grep -q '^PACI_WITH_MPI:BOOL=ON' build/release/CMakeCache.txt; then
  # Open MPI refuses to run as root and to start more processes than cores unless told; its
  # shared-memory single-copy mechanism needs ptrace rights that containers lack.
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    mpirun -np 2 --oversubscribe --mca btl_vader_single_copy_mechanism none \
    build/release/bin/paci-lm --mpi --out results/mpi-runs.txt
  lm_args+=(--mpi-results results/mpi-runs.txt)
  echo
else
  echo "(paci::mpi not built: the measured 2-process comparison is skipped)"
fi
build/release/bin/paci-lm --results results "${lm_args[@]}"
