// An open-loop load generator: Poisson arrivals at a fixed rate, latency measured from each
// query's scheduled arrival (so a generator that falls behind shows up as latency rather than
// as a silently lower rate), and the percentiles ParM reports (median, p99, p99.9). Every query
// is recorded with its answer or its error, so a run accounts for each query it sent.
import { Agent, request } from 'node:http';

import { expected, type V2TensorMetadata } from './protocol.js';

/** One query's outcome. */
export interface QueryRecord {
  i: number;
  /** From the scheduled arrival to the answer (or the error). */
  latencyMs: number;
  reconstructed: boolean;
  /** Null when answered. */
  error: string | null;
  /** Whether the predicted class (argmax) matches the label; null without a label or an answer. */
  correct: boolean | null;
}

export interface LoadSummary {
  /** Queries sent; every one is answered or counted as an error. */
  queries: number;
  answered: number;
  errors: number;
  /** Errors by kind (`HTTP 504`, `timeout`, …). */
  errorKinds: Record<string, number>;
  reconstructed: number;
  /** Seconds from the first arrival to the last answer. */
  durationS: number;
  /** Answered queries per second. */
  achievedQps: number;
  medianMs: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  meanMs: number;
  maxMs: number;
  /** Answered queries with a label, the correct ones among them, and the same for reconstructed answers. */
  labelled: number;
  correct: number;
  reconstructedLabelled: number;
  reconstructedCorrect: number;
}

export interface LoadResult extends LoadSummary {
  records: QueryRecord[];
  /** The first error message seen, if any. */
  firstError?: string;
}

export interface SendResult {
  reconstructed: boolean;
  /** The prediction, when the caller wants accuracy against labels. */
  output?: ArrayLike<number>;
}

export interface LoadOptions {
  /** Mean arrivals per second. */
  rate: number;
  /** Most queries to send. */
  queries: number;
  /** Stop sending new queries after this many seconds (the ones sent are still awaited). */
  maxDurationS?: number;
  /** Sends query i; resolves with whether its answer was reconstructed (and optionally the output). */
  send: (i: number) => Promise<SendResult>;
  /** The true class of query i, when known. */
  label?: (i: number) => number | undefined;
  seed?: number;
}

/** The q-quantile of sorted values (nearest rank). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let j = 1; j < v.length; j++) if (v[j] > v[best]) best = j;
  return best;
}

/** `HTTP 503: …` → `HTTP 503`; other messages by their first words. */
function errorKind(message: string): string {
  const m = /^(HTTP \d{3}|timeout|[A-Z][A-Z_]+)\b/.exec(message);
  return m ? m[1] : message.split(/[:(]/)[0].slice(0, 40).trim();
}

/** Percentiles, mean, throughput and accuracy of a set of query records (one run, or several pooled). */
export function summarize(records: readonly QueryRecord[], durationS: number): LoadSummary {
  const ok = records.filter((r) => r.error === null);
  const lat = ok.map((r) => r.latencyMs).sort((a, b) => a - b);
  const errorKinds: Record<string, number> = {};
  for (const r of records) if (r.error !== null) errorKinds[errorKind(r.error)] = (errorKinds[errorKind(r.error)] ?? 0) + 1;
  const labelled = ok.filter((r) => r.correct !== null);
  const recLabelled = labelled.filter((r) => r.reconstructed);
  return {
    queries: records.length, answered: ok.length, errors: records.length - ok.length, errorKinds,
    reconstructed: ok.filter((r) => r.reconstructed).length,
    durationS, achievedQps: ok.length / Math.max(durationS, 1e-9),
    medianMs: quantile(lat, 0.5), p90Ms: quantile(lat, 0.9), p99Ms: quantile(lat, 0.99), p999Ms: quantile(lat, 0.999),
    meanMs: lat.reduce((a, b) => a + b, 0) / Math.max(1, lat.length), maxMs: lat[lat.length - 1] ?? NaN,
    labelled: labelled.length, correct: labelled.filter((r) => r.correct).length,
    reconstructedLabelled: recLabelled.length, reconstructedCorrect: recLabelled.filter((r) => r.correct).length,
  };
}

export async function runPoissonLoad(options: LoadOptions): Promise<LoadResult> {
  const { rate, queries, send, label } = options;
  if (!(rate > 0)) throw new RangeError(expected('options.rate', 'a positive number of queries per second', rate));
  if (!Number.isInteger(queries) || queries < 1) throw new RangeError(expected('options.queries', 'a positive integer', queries));
  const maxMs = (options.maxDurationS ?? Infinity) * 1000;
  if (!(maxMs > 0)) throw new RangeError(expected('options.maxDurationS', 'a positive number of seconds', options.maxDurationS));
  let s = (options.seed ?? 1) >>> 0 || 1;
  const uniform = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  const records: QueryRecord[] = [];
  let firstError: string | undefined;
  const t0 = performance.now();
  let next = 0;
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < queries; i++) {
    next += (-Math.log(uniform()) / rate) * 1000;
    if (next > maxMs) break;
    const wait = t0 + next - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const arrival = t0 + next;
    inflight.push(
      send(i).then(
        (r) => {
          const want = label?.(i);
          const correct = want === undefined || !r.output ? null : argmax(r.output) === want;
          records.push({ i, latencyMs: performance.now() - arrival, reconstructed: r.reconstructed, error: null, correct });
        },
        (err: Error) => {
          const message = String(err?.message ?? err);
          records.push({ i, latencyMs: performance.now() - arrival, reconstructed: false, error: message, correct: null });
          firstError ??= message;
        },
      ),
    );
  }
  await Promise.all(inflight);
  records.sort((a, b) => a.i - b.i);
  return { ...summarize(records, (performance.now() - t0) / 1000), records, firstError };
}

/**
 * A sender that posts one sample per KServe v2 request to a frontend over HTTP (keep-alive). The
 * input is named as given, or described by the model's input metadata (name and shape, batch
 * dimension first). A query with no answer within `timeoutMs` fails with a `timeout` error, so
 * nothing hangs uncounted.
 */
export function httpSender(url: string, model: string, input: string | V2TensorMetadata, sample: (i: number) => Float32Array, timeoutMs = 30_000): (i: number) => Promise<SendResult> {
  const inputName = typeof input === 'string' ? input : input.name;
  const sampleShape = typeof input === 'string' ? null : input.shape.slice(1);
  const u = new URL(url);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  return (i) => new Promise((resolve, reject) => {
    const x = sample(i);
    const body = JSON.stringify({ inputs: [{ name: inputName, shape: [1, ...(sampleShape ?? [x.length])], datatype: 'FP32', data: Array.from(x) }] });
    const req = request({ host: u.hostname, port: u.port, path: `/v2/models/${model}/infer`, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: string; outputs?: { data?: number[] }[]; parameters?: { reconstructed?: boolean } };
          if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}: ${json.error}`));
          else resolve({ reconstructed: json.parameters?.reconstructed === true, output: json.outputs?.[0]?.data });
        } catch (err) {
          reject(new Error(`HTTP ${res.statusCode}: unreadable response (${(err as Error).message})`));
        }
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}
