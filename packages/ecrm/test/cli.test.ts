import { describe, expect, it, vi } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ecrmCommand } from '../src/cli.js';

async function run(argv: string[]) {
  let out = '', err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  try {
    return { code: await ecrmCommand(argv), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('kintsugi ecrm', () => {
  it('runs the comparison with a failure, prints the table and writes the SVG plot', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ecrm-cli-'));
    const svg = join(dir, 'plot.svg');
    const r = await run(['--modes', 'none,checkpoint,xor', '--steps', '24', '--batch', '64', '--rows', '300', '--dim', '8', '--checkpoint-every', '8', '--svg', svg, '--rebuild-range-slots', '64', '--rebuild-pause-ms', '1']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^DLRM kaggle \(bottom 13-512-256-64-8, top 512-256-1; 26 tables × 300 rows × 8\), batch 64, 24 steps, k = 4; data shard 1 killed at step 12/);
    expect(r.out).toMatch(/\| no fault tolerance \| \d+ \|/);
    expect(r.out).toMatch(/\| checkpoint every 8 \| \d+ \| -?\d+\.\d% .*\| 4 \|/); // 4 steps redone
    expect(r.out).toMatch(/\| ecrm xor k=4 r=1 \| \d+ \| -?\d+\.\d% .*\| 0 \|/);
    const plot = await readFile(svg, 'utf8');
    expect(plot).toMatch(/^<svg/);
    expect(plot.match(/<path /g)).toHaveLength(3);
    await rm(dir, { recursive: true, force: true });
  });

  it('measures the steady-state overhead with the modes\' steps interleaved', async () => {
    const r = await run(['overhead', '--modes', 'none,xor,rs', '--steps', '8', '--warmup', '2', '--batch', '64', '--rows', '300', '--dim', '8', '--arch', 'small']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^DLRM small \(bottom 13-64-8, top 64-1; 26 tables × 300 rows × 8\), batch 64, k = 4;/);
    expect(r.out).toMatch(/8 rounds of one step per mode after 2 warm-up steps, no failure/);
    expect(r.out).toMatch(/\| no fault tolerance \| \d+\.\d\d ms \| 0\.0% \|/);
    expect(r.out).toMatch(/\| ecrm xor k=4 r=1 \| \d+\.\d\d ms \| -?\d+\.\d% \| -?\d+\.\d% … -?\d+\.\d% \|/);
    expect(r.out).toMatch(/\| ecrm rs k=4 r=2 \| \d+\.\d\d ms \|/);
  });

  it('rejects bad options with usage and exit code 2', async () => {
    const r = await run(['--steps', 'many']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/Expected an integer >= 8 for --steps but received "many"/);
    expect((await run(['--modes', 'none,raid5', '--steps', '8'])).err).toMatch(/Expected one of none, .* for a mode but received "raid5"/);
    expect((await run(['--rebuild-range-slots', '0', '--steps', '8'])).err).toMatch(/Expected an integer >= 1 for --rebuild-range-slots but received "0"/);
    expect((await run(['--arch', 'huge', '--steps', '8'])).err).toMatch(/Expected one of kaggle, small for --arch but received "huge"/);
    expect((await run(['frobnicate'])).err).toMatch(/Expected report, train, overhead or serve for the ecrm command but received "frobnicate"/);
    expect((await run(['overhead', '--modes', 'xor,none', '--steps', '8'])).err).toMatch(/Expected 'none' \(the baseline\) as the first mode but received "xor"/);
    expect((await run(['overhead', '--modes', 'none,checkpoint', '--steps', '8'])).err).toMatch(/Expected one of none, xor, xor-replicated, rs, sum for a mode but received "checkpoint"/);
    expect((await run(['--help'])).out).toMatch(/Usage:/);
  });
});
