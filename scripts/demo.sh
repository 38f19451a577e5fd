#!/usr/bin/env bash
# The README's main job: install what is needed, build, and run `sae demo`: standard and TopK
# SAEs trained side by side on synthetic data with known features, scored on how well they
# recover them (about a minute on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSAE_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
./build/examples/sae demo "$@"
