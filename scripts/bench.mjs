#!/usr/bin/env node
// The bench suite: runs the native bench executable (native/bench, built with the addon) and
// passes its arguments through, e.g. `pnpm bench -- --filter gemm`.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const exe = resolve(root, 'native/build/kintsugi_bench');
if (!existsSync(exe)) {
  console.error(`${exe} is missing: run "npx -y pnpm@10.34.9 install" (or "pnpm build") first.`);
  process.exit(1);
}
const r = spawnSync(exe, process.argv.slice(2), { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
