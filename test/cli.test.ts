// The main job: `kintsugi demo --quick` runs every kernel, checks it and prints the table.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const bin = join(dirname(require.resolve('@kintsugi/cuda-core/package.json')), 'bin', 'kintsugi.js');

describe('kintsugi CLI', () => {
  it('demo --quick passes every check and prints throughput', () => {
    const r = spawnSync(process.execPath, [bin, 'demo', '--quick'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\| sgemm\s+\| 512x512x512\s+\|/);
    expect(r.stdout).toMatch(/GFLOP\/s/);
    expect(r.stdout).not.toMatch(/FAIL/);
    expect(r.stdout).toMatch(/all \d+ checks passed/);
  });

  it('devices lists the CPU and explains the GPU status', () => {
    const r = spawnSync(process.execPath, [bin, 'devices'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.devices[0].kind).toBe('cpu');
    expect(typeof info.cuda.reason).toBe('string');
  });

  it('an unknown command exits 2 with usage', () => {
    const r = spawnSync(process.execPath, [bin, 'frobnicate'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/Unknown command "frobnicate"/);
  });
});
