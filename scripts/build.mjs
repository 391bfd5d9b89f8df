#!/usr/bin/env node
// Builds everything after install: the native addon (cmake-js; CUDA when nvcc is found, set
// KINTSUGI_CUDA=on|off to force), then every TypeScript package in dependency order.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');

function step(title, cmd, args, cwd) {
  console.log(`\n> ${title}`);
  const r = spawnSync(cmd, args, { cwd: resolve(root, cwd), stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`build failed at: ${title} (exit ${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
}

const cmakeJs = resolve(root, 'native/node_modules/cmake-js/bin/cmake-js');
step('native addon (cmake-js)', process.execPath, [cmakeJs, 'compile', `--CDKINTSUGI_CUDA=${process.env.KINTSUGI_CUDA ?? 'auto'}`], 'native');
const tsc = resolve(root, 'node_modules/typescript/bin/tsc');
for (const pkg of ['cuda-core', 'abft', 'coded-inference', 'ecrm']) {
  step(`@kintsugi/${pkg} (tsc)`, process.execPath, [tsc, '-p', 'tsconfig.json'], `packages/${pkg}`);
}
