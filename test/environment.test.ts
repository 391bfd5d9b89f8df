// Environment overrides: KINTSUGI_NUM_THREADS sizes the native pool, KINTSUGI_ISA caps the
// instruction set (every path gives correct results, so one binary serves any x86-64).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const pkg = dirname(require.resolve('@kintsugi/cuda-core/package.json'));
const entry = pathToFileURL(join(pkg, 'dist', 'index.js')).href;

function run(env: Record<string, string>, code: string) {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as k from '${entry}'; ${code}`], { encoding: 'utf8', env: { ...process.env, ...env } });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe('environment', () => {
  it('KINTSUGI_NUM_THREADS sets the pool size', () => {
    expect(run({ KINTSUGI_NUM_THREADS: '3' }, 'console.log(JSON.stringify(k.numThreads()))')).toBe(3);
    expect(run({ KINTSUGI_NUM_THREADS: '1' }, 'console.log(JSON.stringify(k.devices()[0].threads))')).toBe(1);
  });

  it('KINTSUGI_ISA=portable and =avx2 run the demo checks on those paths', () => {
    for (const isa of ['portable', 'avx2']) {
      const info = run({ KINTSUGI_ISA: isa }, 'console.log(JSON.stringify(k.cpuInfo()))');
      expect(['portable', isa]).toContain(info.activeIsa);
      const r = spawnSync(process.execPath, [join(pkg, 'bin', 'kintsugi.js'), 'demo', '--quick'], { encoding: 'utf8', env: { ...process.env, KINTSUGI_ISA: isa } });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`cpu, ${info.activeIsa}`));
    }
  });

  it('using-declarations release tensors and packed weights', () => {
    const out = run({}, `
      const t = k.Tensor.random([4, 4]);
      const p = new k.PackedWeights(t);
      p[Symbol.dispose]();
      t[Symbol.dispose]();
      console.log(JSON.stringify([t.disposed, p.disposed]));`);
    expect(out).toEqual([true, true]);
  });
});
