// An open-loop load generator: Poisson arrivals at a fixed rate, latency measured from each
// query's scheduled arrival (so a generator that falls behind shows up as latency rather than
// as a silently lower rate), and the percentiles ParM reports (median, p99, p99.9).
import { Agent, request } from 'node:http';

import { expected } from './protocol.js';

export interface LoadResult {
  queries: number;
  errors: number;
  reconstructed: number;
  /** Seconds from the first arrival to the last answer. */
  durationS: number;
  achievedQps: number;
  medianMs: number;
  p99Ms: number;
  p999Ms: number;
  meanMs: number;
  maxMs: number;
  /** The first error message seen, if any. */
  firstError?: string;
}

export interface LoadOptions {
  /** Mean arrivals per second. */
  rate: number;
  queries: number;
  /** Sends query i; resolves with whether its answer was reconstructed. */
  send: (i: number) => Promise<{ reconstructed: boolean }>;
  seed?: number;
}

/** The q-quantile of sorted values (nearest rank). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export async function runPoissonLoad(options: LoadOptions): Promise<LoadResult> {
  const { rate, queries, send } = options;
  if (!(rate > 0)) throw new RangeError(expected('options.rate', 'a positive number of queries per second', rate));
  if (!Number.isInteger(queries) || queries < 1) throw new RangeError(expected('options.queries', 'a positive integer', queries));
  let s = (options.seed ?? 1) >>> 0 || 1;
  const uniform = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  const latencies: number[] = [];
  let errors = 0, reconstructed = 0, firstError: string | undefined;
  const t0 = performance.now();
  let next = 0;
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < queries; i++) {
    next += (-Math.log(uniform()) / rate) * 1000;
    const wait = t0 + next - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const arrival = t0 + next;
    inflight.push(
      send(i).then(
        (r) => {
          latencies.push(performance.now() - arrival);
          if (r.reconstructed) reconstructed++;
        },
        (err: Error) => {
          errors++;
          firstError ??= err.message;
        },
      ),
    );
  }
  await Promise.all(inflight);
  const durationS = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    queries, errors, reconstructed, durationS, achievedQps: queries / durationS,
    medianMs: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), p999Ms: quantile(latencies, 0.999),
    meanMs: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length), maxMs: latencies[latencies.length - 1] ?? NaN,
    firstError,
  };
}

/** A sender that posts one sample per KServe v2 request to a frontend over HTTP (keep-alive). */
export function httpSender(url: string, model: string, inputName: string, sample: (i: number) => Float32Array): (i: number) => Promise<{ reconstructed: boolean }> {
  const u = new URL(url);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  return (i) => new Promise((resolve, reject) => {
    const x = sample(i);
    const body = JSON.stringify({ inputs: [{ name: inputName, shape: [1, x.length], datatype: 'FP32', data: Array.from(x) }] });
    const req = request({ host: u.hostname, port: u.port, path: `/v2/models/${model}/infer`, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: string; parameters?: { reconstructed?: boolean } };
        if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}: ${json.error}`));
        else resolve({ reconstructed: json.parameters?.reconstructed === true });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}
