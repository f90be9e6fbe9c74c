#!/usr/bin/env bash
# Builds and runs the paci demo (examples/paci-demo) in Release; arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh

cmake --preset release
cmake --build --preset release --target paci-demo
exec build/release/bin/paci-demo "$@"
