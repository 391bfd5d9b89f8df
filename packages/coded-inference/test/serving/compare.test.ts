// The comparison bench end to end at toy scale (every approach under the same load, with a worker
// killed mid-run), its result files, its command line, and the background CPU load.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { beforeAll, describe, expect, it } from 'vitest';

import {
  ccdfPoints, combineRuns, comparisonCsv, comparisonDefaults, comparisonJson, loadModelSpec, parseApproach, parseLoadgenArgs, runComparison, startCpuLoad, summarize, tailSvg, writeComparison,
  type Comparison, type ComparisonRow, type QueryRecord,
} from '../../src/serving/index.js';
import { burn } from '../../src/serving/worker.js';
import { ensureBuilt } from './helpers.js';

beforeAll(ensureBuilt);

/** Splits RFC 4180 CSV (quoted fields may hold commas, quotes and newlines). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') field += text[++i];
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field), (field = '');
    else if (c === '\n') row.push(field), rows.push(row), (row = []), (field = '');
    else field += c;
  }
  expect(quoted).toBe(false);
  expect(field).toBe('');
  return rows;
}

/** Every tag closed in order, no raw '<' or '&' in attributes, no NaN drawn. */
function expectWellFormedSvg(svg: string): void {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w:-]*)([^>]*?)(\/?)>/g)) {
    const [, closing, name, attrs, selfClosing] = m;
    expect(attrs).not.toMatch(/[<&](?!amp;|lt;|gt;|quot;)/);
    if (closing) expect(stack.pop()).toBe(name);
    else if (!selfClosing) stack.push(name);
  }
  expect(stack).toEqual([]);
  expect(svg).not.toMatch(/NaN|Infinity|undefined/);
}

const record = (i: number, latencyMs: number, extra: Partial<QueryRecord> = {}): QueryRecord => ({ i, latencyMs, reconstructed: false, error: null, correct: null, ...extra });

/** A comparison without running anything: two approaches, hand-made latencies. */
function syntheticComparison(): Comparison {
  const rows = [['parm-k2', 10, 30], ['equal-3', 10, 110]].map(([name, base, tail]): ComparisonRow => {
    const records = Array.from({ length: 1000 }, (_, i) => record(i, i < 995 ? (base as number) + (i % 10) / 10 : (tail as number), { reconstructed: name === 'parm-k2' && i >= 995, correct: i % 50 !== 0 }));
    records.push(record(1000, 5000, { error: 'HTTP 504: No prediction within 5000 ms' }));
    const a = parseApproach(name as string);
    const summary = summarize(records, 10);
    return { ...a, resources: `${a.resources}, "quoted", with commas`, summary, pooled: summary, callsPerQuery: a.nominalCalls, hedges: 0, retries: 0, restarts: 0, utilization: 0.4, gapMs: summary.p999Ms - summary.medianMs, gapRatio: null, medianVsEqual: null, ccdf: ccdfPoints(records) };
  });
  rows[0].gapRatio = rows[1].gapMs / rows[0].gapMs;
  rows[0].medianVsEqual = 0;
  return {
    options: { ...comparisonDefaults, approaches: ['parm-k2', 'equal-3'], rate: 100, queries: 1001 },
    command: 'kintsugi loadgen --approaches parm-k2,equal-3',
    environment: { cpus: 2, cpuModel: 'test <cpu> & co', node: 'v20', commit: 'abc', loadAvgStart: 1, loadAvgEnd: 1, date: '2025-01-01', dataset: 'synthetic' },
    rows, runs: [],
  };
}

describe('comparison results files', () => {
  it('summarizes pooled records: percentiles, errors by kind, accuracy', () => {
    const c = syntheticComparison();
    const s = c.rows[0].summary;
    expect(s).toMatchObject({ queries: 1001, answered: 1000, errors: 1, errorKinds: { 'HTTP 504': 1 }, reconstructed: 5, labelled: 1000, correct: 980, reconstructedLabelled: 5 });
    expect(s.p999Ms).toBe(30);
    expect(s.medianMs).toBeCloseTo(10.4, 6);
    // 1 − CDF counts the error as never answered: the curve ends at 1/1001, not at 0.
    const last = c.rows[0].ccdf.at(-1)!;
    expect(last[0]).toBe(30);
    expect(last[1]).toBeCloseTo(2 / 1001, 9);
  });

  it('writes CSV with one well-formed row per approach, JSON that parses, and a well-formed SVG', async () => {
    const c = syntheticComparison();
    const rows = parseCsv(comparisonCsv(c));
    expect(rows).toHaveLength(3);
    for (const r of rows) expect(r).toHaveLength(rows[0].length);
    const col = (name: string) => rows[0].indexOf(name);
    expect(rows[1][col('approach')]).toBe('parm-k2');
    expect(rows[1][col('resources')]).toContain('"quoted", with commas');
    expect(Number(rows[1][col('p99.9 ms')])).toBe(30);
    expect(Number(rows[1][col('gap: equal ÷ this')])).toBeCloseTo(c.rows[1].gapMs / c.rows[0].gapMs, 4);
    expect(rows[2][col('gap: equal ÷ this')]).toBe('');
    expect(JSON.parse(comparisonJson(c))).toMatchObject({ command: c.command, rows: [{ name: 'parm-k2' }, { name: 'equal-3' }] });
    const svg = tailSvg(c);
    expectWellFormedSvg(svg);
    expect(svg.match(/<polyline /g)).toHaveLength(2);
    expect(svg).toContain('>share of queries slower (1 − CDF)<');
    expect(svg).toContain('parm-k2 (p99.9 30.0 ms)');

    const dir = await mkdtemp(join(tmpdir(), 'kintsugi-compare-'));
    try {
      const files = await writeComparison(c, dir, 'cmp');
      expect(files.map((f) => f.slice(dir.length + 1)).sort()).toEqual(['cmp-tail.svg', 'cmp.csv', 'cmp.json', 'cmp.md']);
      const md = await readFile(join(dir, 'cmp.md'), 'utf8');
      expect(md).toContain('| parm-k2 |');
      expect(md).toContain('`kintsugi loadgen --approaches parm-k2,equal-3`');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('combining runs', () => {
  it('takes the median over runs of each latency figure, or pools every query', () => {
    // Three runs of 1000 queries; the second hit by a 300 ms stall that delayed 20 of its queries.
    const runs = [0, 1, 2].map((n) => {
      const records = Array.from({ length: 1000 }, (_, i) => record(n * 1000 + i, n === 1 && i < 20 ? 300 : 10 + n + (i % 100) / 100));
      const stats = { workerCalls: 1500, hedges: 0, retries: 0, workers: [{ restarts: n }] } as never;
      return { records, summary: summarize(records, 10), stats, utilization: 0.4 };
    });
    const a = parseApproach('parm-k2');
    const med = combineRuns(a, runs, 'median');
    expect(med.summary.p999Ms).toBeCloseTo(12.99, 6); // runs: 10.99, 300, 12.99 → 12.99
    const medians = runs.map((r) => r.summary.medianMs).sort((x, y) => x - y);
    expect(med.summary.medianMs).toBe(medians[1]);
    expect(med.pooled.p999Ms).toBe(300);
    expect(med).toMatchObject({ callsPerQuery: 1.5, restarts: 3 });
    expect(med.utilization).toBeCloseTo(0.4, 9);
    expect(med.summary).toMatchObject({ queries: 3000, answered: 3000 });
    expect(med.gapMs).toBeCloseTo(12.99 - medians[1], 6);
    const pooled = combineRuns(a, runs, 'pooled');
    expect(pooled.summary.p999Ms).toBe(300);
    expect(pooled.ccdf.at(-1)).toEqual([300, 1 / 3000]);
  });
});

describe('runComparison', () => {
  it('runs ParM and every baseline under the same load with a worker killed mid-run, losing no query', async () => {
    const lines: string[] = [];
    const c = await runComparison({
      approaches: ['parm-k2', 'equal-3', 'replicate-3', 'hedge-3'], queries: 60, rate: 150, warmup: 10,
      delayMs: 3, slowProbability: 0.1, slowMs: 30, crashAtS: 0.1, inputs: 8, outputs: 4,
    }, (l) => lines.push(l));
    expect(lines).toHaveLength(4);
    for (const row of c.rows) {
      expect(row.summary).toMatchObject({ queries: 60, answered: 60, errors: 0 });
      expect(row.summary.p999Ms).toBeGreaterThanOrEqual(row.summary.medianMs);
    }
    for (const run of c.runs) expect(run.crashedPid).toBeGreaterThan(0);
    const [parm, equal, replicate, hedge] = c.rows;
    expect(parm.summary.reconstructed).toBeGreaterThan(0);
    expect(equal.gapRatio).toBe(1);
    expect(parm.gapRatio).toBeGreaterThan(0);
    expect(replicate.callsPerQuery).toBeGreaterThan(1.2);
    expect(hedge.resources).toMatch(/hedge/);
    expect(c.rows.map((r) => r.workers)).toEqual([3, 3, 3, 3]);
  });
});

describe('loadgen command line', () => {
  it('parses the comparison and its options, and rejects bad ones clearly', () => {
    const a = parseLoadgenArgs(['--compare', '--rate', '80', '--slow-workers', '0,2', '--model', 'mnist', '--out', '/tmp/x', '--name', 'run']);
    expect(a).toMatchObject({ compare: true, out: '/tmp/x', name: 'run', options: { rate: 80, slowWorkers: [0, 2], model: 'mnist' } });
    expect(a.options.approaches).toEqual(['parm-k2', 'equal-3', 'replicate-3', 'hedge-3', 'parm-k4', 'equal-5', 'replicate-5', 'hedge-5']);
    expect(parseLoadgenArgs(['--approaches', 'parm-k4,equal-5']).options.approaches).toEqual(['parm-k4', 'equal-5']);
    expect(() => parseLoadgenArgs(['--rte', '80'])).toThrow(/^Expected --compare, --help, --rate, .* for an option but received "--rte"$/);
    expect(() => parseLoadgenArgs(['--rate', 'fast'])).toThrow('Expected a non-negative number for --rate but received "fast"');
    expect(() => parseLoadgenArgs(['--rate'])).toThrow('Expected a value for the value of --rate but received nothing');
    expect(() => parseApproach('parm-k1')).toThrow("Expected an integer in [2, 8] for k in approach 'parm-k1' but received 1");
    expect(() => parseApproach('mirror-3')).toThrow('Expected parm-k<K>, equal-<N>, replicate-<N> or hedge-<N> for an approach but received "mirror-3"');
    expect(() => parseApproach('replicate-1')).toThrow("Expected an integer in [2, 16] for the workers in approach 'replicate-1' but received 1");
  });

  it('checks the options before starting anything', async () => {
    await expect(runComparison({ approaches: ['parm-k2', 'equal-3'], crashAtS: 1, crashWorker: 2 })).rejects.toThrow('Expected an integer in [0, 1] for --crash-worker but received 2');
    await expect(runComparison({ repeat: 0 })).rejects.toThrow('Expected an integer in [1, 100] for --repeat but received 0');
    await expect(runComparison({ model: 'resnet' as never })).rejects.toThrow('Expected \'linear\', \'mnist\', \'mnist-resnet\' or \'mnist-resnet-full\' for --model but received "resnet"');
    await expect(runComparison({ model: 'mnist-resnet-full', approaches: ['parm-k4', 'equal-5'] })).rejects.toThrow('Expected parm-k2 as the only ParM approach with --model mnist-resnet-full (the shipped full-canvas parity model is k = 2) for --approaches but received parm-k4');
    await expect(runComparison({ slowWorkers: [7] })).rejects.toThrow('Expected an integer in [0, 2] for --slow-workers but received 7');
  });
});

describe('nn models for the comparison', () => {
  it('serves a model file by its spec (file:<path>[#name])', async () => {
    const file = join(dirname(fileURLToPath(import.meta.url)), '../../models/mnist-mlp.safetensors');
    const m = await loadModelSpec(`file:${file}`);
    expect(m).toMatchObject({ name: 'mnist-mlp', inputShape: [1, 28, 28], outputShape: [10] });
    expect((await m.predict(new Float32Array(2 * 784), 2)).length).toBe(20);
    expect((await loadModelSpec(`file:${file}#deployed`)).name).toBe('deployed');
    await expect(loadModelSpec('file:')).rejects.toThrow("Expected a model file path for the path in model spec 'file:' but received nothing");
  });
});

describe('background CPU load', () => {
  const cpuMs = (pid: number) => {
    // utime + stime in clock ticks (fields 14 and 15 of /proc/<pid>/stat; 100 ticks a second on Linux).
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  };

  it.runIf(process.platform === 'linux')('burns real CPU time in its processes, not sleeps', async () => {
    const load = await startCpuLoad({ processes: 1, duty: 1, periodMs: 50 });
    try {
      await new Promise((r) => setTimeout(r, 600));
      // On a busy 2-CPU machine it may get well under a full core, but far more than a sleeper.
      expect(cpuMs(load.pids[0])).toBeGreaterThan(100);
    } finally {
      await load.stop();
    }
    await expect(startCpuLoad({ processes: 1, duty: 0 })).rejects.toThrow('Expected a number in (0, 1] for options.duty but received 0');
  });

  it('burns CPU in a worker per request (burnMs)', () => {
    const before = process.cpuUsage();
    burn(50);
    const used = process.cpuUsage(before);
    expect((used.user + used.system) / 1000).toBeGreaterThan(20);
  });
});
