#!/usr/bin/env bash
# The CUDA checks for a machine with a GPU: builds the native tests and bench with the CUDA
# backend (sm_75/80/90), runs the CUDA unit tests (each compares a kernel with the CPU one) and
# the GPU bench rows (ours vs cuBLAS, coding vs device-to-device copy), and, when node is on PATH
# and the addon and node_modules are present, the CUDA tests of the JS API.
# Usage: bash scripts/gpu-check.sh [results-dir]   (no Node is needed for the native part)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results}
build=native/build-gpu
mkdir -p "$out"
cmake -S native -B "$build" -DCMAKE_BUILD_TYPE=Release -DKINTSUGI_CUDA=on -DKINTSUGI_BUILD_TESTS=ON -DKINTSUGI_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv || true
ctest --test-dir "$build" --output-on-failure
host=$(hostname | tr -c 'A-Za-z0-9._-\n' '_')
date=$(date -u +%F)
"$build/kintsugi_bench" --filter cuda --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --json "$out/$host-$date-gpu.json" --md "$out/$host-$date-gpu.md"
if command -v node >/dev/null && [ -f native/build/Release/kintsugi.node ] && [ -d node_modules/vitest ]; then
  node node_modules/vitest/vitest.mjs run packages/cuda-core/test/cuda.test.ts packages/cuda-core/test/nvml.test.ts
fi
