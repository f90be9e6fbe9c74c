#!/usr/bin/env bash
# The main job: builds paci-plan in Release and prints, for an 8-stage pipeline, every policy side by
# side (validity, simulated time per micro-batch and bubble, activation memory, weight versions,
# observed drift and staleness against their bounds), then the planner's pick for a memory and a
# drift budget. Extra arguments go to the comparison (for example --microbatches 8 --costs f=1,b=3).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh

cmake --preset release >/dev/null
cmake --build --preset release --target paci-plan
echo
build/release/bin/paci-plan --compare --stages 8 --microbatches 16 "$@"
echo
build/release/bin/paci-plan --plan --stages 8 --microbatches 16 --memory-budget 8 --drift-budget 1
