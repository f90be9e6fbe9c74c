#!/usr/bin/env bash
# The main job: builds paci-plan and the training demo in Release. For an 8-stage pipeline it prints
# every policy side by side (validity, simulated time per micro-batch and bubble, activation memory,
# weight versions, observed drift and staleness against their bounds) and the planner's ranking for a
# memory and a drift budget; then it trains a real 4-stage model in one process (one thread per
# stage) with 1F1B-flush and PACI and checks the run against the library's predictions. Extra
# arguments go to the comparison (for example --microbatches 8 --costs f=1,b=3).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh

cmake --preset release >/dev/null
cmake --build --preset release --target paci-plan train
echo
build/release/bin/paci-plan --compare --stages 8 --microbatches 16 "$@"
echo
build/release/bin/paci-plan --plan --stages 8 --microbatches 16 --memory-budget 8 --drift-budget 1
echo
build/release/bin/train
