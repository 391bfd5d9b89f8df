// `kintsugi util` end to end: the tables, the three files, and clear errors for bad options.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { devices } from '../../src/index.js';

const bin = join(import.meta.dirname, '../../bin/kintsugi.js');
const util = (...args: string[]) => spawnSync(process.execPath, [bin, 'util', ...args], { encoding: 'utf8' });
const dir = mkdtempSync(join(tmpdir(), 'kintsugi-util-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kintsugi util', () => {
  it('prints per-layer and per-network tables and writes util.json, roofline.svg and layers.svg', () => {
    const r = util('--networks', 'resnet18', '--batches', '1', '--repeats', '1', '--max-layers', '3', '--out', dir);
    expect(r.stderr).not.toMatch(/failed/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/\| network +\| layer +\| batch \| ms +\| GFLOP \| AI \(FLOP\/B\) \| GFLOP\/s \| FLOP util % \| NVML util % \|/);
    expect(r.stdout).toMatch(/\| resnet18 \| layer1\.0\.conv1 \(×4\) \| 1 +\| [\d.]+ +\| 0\.231 +\| 131\.9 +\|/);
    expect(r.stdout).toMatch(/\| ResNet-18 \| 1 +\|/);
    for (const f of ['util.json', 'roofline.svg', 'layers.svg']) expect(existsSync(join(dir, f))).toBe(true);
    const json = JSON.parse(readFileSync(join(dir, 'util.json'), 'utf8'));
    expect(json.layers.map((l: { layer: string }) => l.layer)).toEqual(['conv1', 'layer1.0.conv1', 'layer2.0.conv1']);
    expect(json.peak.source).toBe('measured');
    expect(json.networks[0]).toMatchObject({ network: 'resnet18', batch: 1, complete: true });
    expect(readFileSync(join(dir, 'roofline.svg'), 'utf8')).toMatch(/^<svg /);
  });

  it.each([
    [['--networks', 'alexnet'], /Expected one of resnet18, resnet50, vgg16, mobilenetv2 for --networks but received "alexnet"/],
    [['--batches', '1,0'], /Expected a positive integer for --batches but received "0"/],
    [['--repeats', 'x'], /Expected a positive integer for --repeats but received "x"/],
    [['--device', 'tpu'], /Expected cpu or cuda:N for --device but received "tpu"/],
    [['--frobnicate'], /Unknown option '--frobnicate'/],
  ])('rejects %j', (args, message) => {
    const r = util(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toContain('Usage: kintsugi util');
  });

  it('says clearly when --device cuda:0 has no GPU behind it', () => {
    const r = util('--device', 'cuda:0', '--out', dir);
    expect(r.status).toBe(2);
    if (devices().some((d) => d.kind === 'cuda')) expect(r.stderr).toMatch(/CUDA layer runner is not available/);
    else expect(r.stderr).toMatch(/No CUDA device cuda:0 for --device \(found 0; .*\)\. Use --device cpu\./);
  });
});
