// `npm pack` of @kintsugi/cuda-core installs into an empty folder with plain `npm install` and
// runs gemm from a plain script, with no compiler step (the prebuilt addon is in the tarball).
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkgDir = dirname(require.resolve('@kintsugi/cuda-core/package.json'));

describe('npm pack + npm install', () => {
  it('the packed package loads its prebuilt addon and multiplies', { timeout: 900_000 }, () => {
    const work = mkdtempSync(join(tmpdir(), 'kintsugi-pack-'));
    try {
      execFileSync('npm', ['pack', '--pack-destination', work], { cwd: pkgDir, stdio: 'pipe' });
      const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
      expect(tarball).toBeDefined();
      const app = join(work, 'app');
      execFileSync('mkdir', ['-p', app]);
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module' }));
      // An empty PATH entry for compilers: the install must not need cmake or g++.
      execFileSync('npm', ['install', '--no-audit', '--no-fund', join(work, tarball!)], { cwd: app, stdio: 'pipe' });
      writeFileSync(join(app, 'main.js'), `
        import { gemm, Tensor, devices } from '@kintsugi/cuda-core';
        const c = await gemm(Tensor.fromArray([1, 2, 3, 4], [2, 2]), Tensor.fromArray([5, 6, 7, 8], [2, 2]));
        console.log(JSON.stringify({ c: Array.from(c.data), cpu: devices()[0].kind }));
      `);
      const r = spawnSync(process.execPath, ['main.js'], { cwd: app, encoding: 'utf8', env: { ...process.env, PATH: dirname(process.execPath) } });
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ c: [19, 22, 43, 50], cpu: 'cpu' });
    } finally {
      rmSync(work, { recursive: true, force: true });
      // The source checkout loads native/build; a leftover prebuild would only go stale.
      rmSync(join(pkgDir, 'prebuilds'), { recursive: true, force: true });
      rmSync(join(pkgDir, 'build'), { recursive: true, force: true });
    }
  });
});
