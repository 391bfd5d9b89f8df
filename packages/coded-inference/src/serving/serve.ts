// Command-line entry of the coded frontend: starts k data and r parity worker processes (or uses
// remote v2 servers) and serves KServe v2 on 127.0.0.1.
//
//   node dist/serving/serve.js --model linear:in=20,out=10 [--parity-model <spec>] [--k 2] [--r 1]
//        [--encoder sum|concat] [--grid RxC] [--canvas same|full] [--data-workers N] [--protocol http|grpc] [--batch B] [--fill-timeout-ms T]
//        [--reconstruct-after-ms D] [--request-timeout-ms T] [--port 0] [--host 127.0.0.1]
//        [--data-url grpc://host:port=model ...] [--parity-url http://host:port=model ...]
//
// Prints `{"listening": port, "url": ...}` once ready; SIGINT/SIGTERM stop it and its workers.

import { CodedFrontend } from './frontend.js';
import type { WorkerSpec } from './process.js';
import { expected } from './protocol.js';
import type { WorkerProtocol } from './worker.js';
import { runIfMain } from './entry.js';
import { canvasNames, parseGrid, type CanvasName } from '../parm/codes.js';

function encoderOf(v: string | undefined): 'sum' | 'concat' {
  if (v === undefined || v === 'sum' || v === 'concat') return v ?? 'sum';
  throw new RangeError(expected('--encoder', "'sum' or 'concat'", v));
}

function gridOf(v: string | undefined): [number, number] | undefined {
  if (v === undefined) return undefined;
  const g = parseGrid(v);
  if (!g) throw new RangeError(expected('--grid', 'ROWSxCOLS, e.g. 2x1', v));
  return g;
}

function canvasOf(v: string | undefined): CanvasName | undefined {
  if (v === undefined || (canvasNames as readonly string[]).includes(v)) return v as CanvasName | undefined;
  throw new RangeError(expected('--canvas', canvasNames.join(' | '), v));
}

export function parseServeArgs(argv: string[]) {
  const single = new Map<string, string>();
  const dataUrls: string[] = [], parityUrls: string[] = [];
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i], value = argv[i + 1];
    if (!flag?.startsWith('--') || value === undefined) throw new RangeError(expected(`argument ${i + 1}`, 'an option and its value (--name value)', flag));
    if (flag === '--data-url') dataUrls.push(value);
    else if (flag === '--parity-url') parityUrls.push(value);
    else single.set(flag.slice(2), value);
  }
  const known = ['model', 'parity-model', 'encoder', 'grid', 'canvas', 'k', 'r', 'data-workers', 'protocol', 'batch', 'fill-timeout-ms', 'reconstruct-after-ms', 'request-timeout-ms', 'port', 'host'];
  for (const key of single.keys()) if (!known.includes(key)) throw new RangeError(expected('an option', known.map((x) => `--${x}`).concat('--data-url', '--parity-url').join(', '), `--${key}`, true));
  const num = (key: string, fallback: number) => {
    const v = single.has(key) ? Number(single.get(key)) : fallback;
    if (!Number.isFinite(v) || v < 0) throw new RangeError(expected(`--${key}`, 'a non-negative number', single.get(key)));
    return v;
  };
  const remote = (u: string): WorkerSpec => {
    const eq = u.lastIndexOf('=');
    if (eq < 0) throw new RangeError(expected('a worker url', "'<url>=<model name>'", u));
    return { url: u.slice(0, eq), model: u.slice(eq + 1) };
  };
  const k = num('k', 2), r = num('r', k > 1 ? 1 : 0);
  const protocol = (single.get('protocol') ?? 'http') as WorkerProtocol;
  const model = single.get('model');
  if (!model && dataUrls.length === 0) throw new RangeError(expected('--model', 'a model spec (or --data-url)', 'nothing', true));
  const parityModel = single.get('parity-model') ?? model;
  const data: WorkerSpec[] = dataUrls.length > 0 ? dataUrls.map(remote) : Array.from({ length: num('data-workers', k) }, () => ({ model: model!, protocol }));
  const parity: WorkerSpec[] = parityUrls.length > 0 ? parityUrls.map(remote) : Array.from({ length: r }, () => ({ model: parityModel!, protocol }));
  return {
    k, r, data, parity,
    encoder: encoderOf(single.get('encoder')),
    grid: gridOf(single.get('grid')),
    canvas: canvasOf(single.get('canvas')),
    batchSize: num('batch', 1),
    fillTimeoutMs: num('fill-timeout-ms', 2),
    reconstructAfterMs: num('reconstruct-after-ms', 0),
    requestTimeoutMs: num('request-timeout-ms', 5000),
    port: num('port', 0),
    host: single.get('host') ?? '127.0.0.1',
  };
}


/** `kintsugi serve ...`: runs the coded frontend until SIGINT/SIGTERM. */
export async function serveCommand(argv: string[]): Promise<number> {
  const frontend = await new CodedFrontend(parseServeArgs(argv)).start();
  process.stdout.write(`${JSON.stringify({ listening: frontend.port, url: frontend.url, model: frontend.modelMetadata.name })}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => void frontend.close().then(resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

runIfMain(import.meta.url, 'kintsugi serve', async (argv) => process.exit(await serveCommand(argv)));
