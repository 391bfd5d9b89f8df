#!/bin/sh
# prebuildify runs "<this> rebuild ..." in the package folder and collects build/Release/*.node.
# It has no cmake-js backend, so bring the workspace's cmake-js build of ../../native up to date
# (incremental: install already built it) and hand prebuildify a copy of the addon.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
native="$here/../../native"
(cd "$native" && npx cmake-js compile --CDKINTSUGI_CUDA="${KINTSUGI_CUDA:-auto}")
mkdir -p "$here/build/Release"
cp "$native/build/Release/kintsugi.node" "$here/build/Release/kintsugi.node"
