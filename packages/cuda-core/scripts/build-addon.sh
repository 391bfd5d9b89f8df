#!/bin/sh
# prebuildify runs "<this> rebuild ..." in the package folder and collects build/Release/*.node.
# It has no cmake-js backend, so build the addon from ../../native with cmake-js into ./build.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here/../../native"
npx cmake-js rebuild --out "$here/build" --CDKINTSUGI_CUDA="${KINTSUGI_CUDA:-auto}" \
  --CDKINTSUGI_BUILD_TESTS=OFF --CDKINTSUGI_BUILD_BENCH=OFF
