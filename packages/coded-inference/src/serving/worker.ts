// A model worker: one model instance behind the KServe v2 protocol, over HTTP/JSON or gRPC.
// Requests run one at a time (as on one GPU model instance), so a slow request delays the ones
// queued behind it, which is how background interference turns into tail latency.
//
//   node dist/serving/worker.js --model linear:in=20,out=10,seed=1 [--port 0] [--protocol http|grpc]
//        [--delay-ms 2] [--slow-prob 0.02 --slow-ms 50] [--burn-ms 1] [--die-after N] [--hang-after N] [--seed S]
//
// Started by a parent with child_process.fork, it reports `{ type: 'listening', port, ... }` over
// IPC; otherwise it prints that object as one JSON line on stdout.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runIfMain } from './entry.js';

import * as grpc from '@grpc/grpc-js';

import { grpcRequestToV2, inferenceService, toGrpcError } from './grpc.js';
import { loadModelSpec, sizeOf, type ServingModel } from './model.js';
import { expected, parseInferRequest, parseJsonBody, ServingError, type V2InferResponse, type V2ModelMetadata } from './protocol.js';

export type WorkerProtocol = 'http' | 'grpc';

/** Fault and straggler injection, for tests and benchmarks. */
export interface FaultOptions {
  /** Added to every inference: stands for the model's compute time (a sleep: it holds the worker, not a CPU). */
  delayMs?: number;
  /** Probability that an inference is slowed by `slowMs` more (background interference). */
  slowProbability?: number;
  slowMs?: number;
  /**
   * CPU time spent busy-looping on every inference, before the model runs: real CPU load (a
   * CPU-bound model, or a co-located job) that competes with every other process on the host.
   */
  burnMs?: number;
  /** The inference request after the first N kills the process with SIGKILL while it is in flight. */
  dieAfter?: number;
  /** After N inference requests the event loop blocks forever: a wedged process that health checks must catch. */
  hangAfter?: number;
  /** Seed of the slowdown draws (reproducible benches). */
  seed?: number;
}

export interface WorkerOptions {
  model: ServingModel;
  port?: number;
  /** 127.0.0.1 unless told otherwise: a worker is not meant to be reachable from other machines. */
  host?: string;
  protocol?: WorkerProtocol;
  faults?: FaultOptions;
  /** Called instead of SIGKILLing the process when `dieAfter` triggers (in-process use). */
  onDie?: () => void;
}

export interface RunningWorker {
  readonly port: number;
  readonly host: string;
  readonly protocol: WorkerProtocol;
  readonly metadata: V2ModelMetadata;
  /** Inference requests received so far. */
  readonly requests: number;
  close(): Promise<void>;
}

const INPUT = 'input', OUTPUT = 'output';
const MAX_BODY = 64 << 20;

export function modelMetadata(model: ServingModel): V2ModelMetadata {
  return {
    name: model.name,
    versions: ['1'],
    platform: 'kintsugi',
    inputs: [{ name: INPUT, datatype: 'FP32', shape: [-1, ...model.inputShape] }],
    outputs: [{ name: OUTPUT, datatype: 'FP32', shape: [-1, ...model.outputShape] }],
  };
}

// xorshift32, so injected slowdowns are reproducible from a seed.
function rng(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Keeps this thread's CPU busy for `ms` (wall time) doing arithmetic; returns the result so it is not optimised away. */
export function burn(ms: number): number {
  const until = performance.now() + ms;
  let x = 1;
  while (performance.now() < until) for (let i = 0; i < 1000; i++) x = (x * 1.000001 + 1e-9) % 1e6;
  return x;
}

/** The model, the fault injection and a one-at-a-time queue: what both transports call into. */
class Engine {
  requests = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #random: () => number;
  constructor(readonly model: ServingModel, readonly faults: FaultOptions, readonly onDie: () => void) {
    this.#random = rng(faults.seed ?? 1);
  }

  checkName(name: string): void {
    if (name !== this.model.name) throw new ServingError(404, expected('model name', `'${this.model.name}'`, name));
  }

  infer(name: string, body: unknown): Promise<V2InferResponse> {
    this.checkName(name);
    const { batch, rows, id } = parseInferRequest(body, this.model.inputShape, INPUT);
    this.requests++;
    const f = this.faults;
    if (f.dieAfter !== undefined && this.requests > f.dieAfter) this.onDie();
    if (f.hangAfter !== undefined && this.requests > f.hangAfter) {
      // Deliberately wedge the event loop: nothing, health checks included, is answered again.
      for (;;) { /* wedged */ }
    }
    const slow = f.slowProbability !== undefined && this.#random() < f.slowProbability ? f.slowMs ?? 0 : 0;
    const run = async (): Promise<V2InferResponse> => {
      const delay = (f.delayMs ?? 0) + slow;
      if (delay > 0) await sleep(delay);
      if (f.burnMs) burn(f.burnMs);
      const out = await this.model.predict(batch, rows);
      return {
        model_name: this.model.name,
        model_version: '1',
        ...(id ? { id } : {}),
        outputs: [{ name: OUTPUT, datatype: 'FP32', shape: [rows, ...this.model.outputShape], data: Array.from(out) }],
      };
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => undefined);
    return result;
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, err: unknown): void {
  const e = err instanceof ServingError ? err : new ServingError(500, (err as Error)?.message ?? String(err));
  if (!res.headersSent) send(res, e.status, { error: e.message });
  else res.destroy();
}

/** Reads a request body up to a size limit (413 past it). */
export function readBody(req: IncomingMessage, limit = MAX_BODY): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new ServingError(413, expected('the request body', `at most ${limit} bytes`, `${size}+ bytes`, true)));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function httpHandler(engine: Engine, metadata: V2ModelMetadata) {
  return async (req: IncomingMessage, res: ServerResponse) => {
    try {
      const path = (req.url ?? '/').split('?')[0].replace(/\/versions\/[^/]+/, '');
      const method = req.method ?? 'GET';
      if (method === 'GET' && path === '/v2/health/live') return send(res, 200, { live: true });
      if (method === 'GET' && path === '/v2/health/ready') return send(res, 200, { ready: true });
      if (method === 'GET' && path === '/v2') return send(res, 200, { name: 'kintsugi-worker', version: '0.1.0', extensions: [] });
      const m = /^\/v2\/models\/([^/]+)(\/ready|\/infer)?$/.exec(path);
      if (!m) throw new ServingError(404, expected('the path', 'a KServe v2 endpoint (/v2/health/{live,ready}, /v2/models/{name}[/ready|/infer])', path));
      const name = decodeURIComponent(m[1]);
      if (m[2] === '/infer') {
        if (method !== 'POST') throw new ServingError(405, expected(`the method of ${path}`, 'POST', method));
        const body = parseJsonBody(await readBody(req));
        return send(res, 200, await engine.infer(name, body));
      }
      if (method !== 'GET') throw new ServingError(405, expected(`the method of ${path}`, 'GET', method));
      engine.checkName(name);
      return send(res, 200, m[2] === '/ready' ? { name, ready: true } : metadata);
    } catch (err) {
      sendError(res, err);
    }
  };
}

function grpcHandlers(engine: Engine, metadata: V2ModelMetadata): grpc.UntypedServiceImplementation {
  type Call = grpc.ServerUnaryCall<Record<string, unknown>, unknown>;
  type Callback = grpc.sendUnaryData<unknown>;
  const unary = (fn: (req: Record<string, unknown>) => unknown | Promise<unknown>) => (call: Call, cb: Callback) => {
    Promise.resolve()
      .then(() => fn(call.request))
      .then((r) => cb(null, r), (err) => cb(toGrpcError(err)));
  };
  return {
    ServerLive: unary(() => ({ live: true })),
    ServerReady: unary(() => ({ ready: true })),
    ModelReady: unary((r) => ({ ready: r.name === engine.model.name })),
    ModelMetadata: unary((r) => {
      engine.checkName(String(r.name));
      return metadata;
    }),
    ModelInfer: unary(async (r) => {
      const v2 = grpcRequestToV2(r as Parameters<typeof grpcRequestToV2>[0]);
      const out = await engine.infer(String(r.model_name), v2);
      return {
        model_name: out.model_name,
        model_version: out.model_version,
        id: out.id ?? '',
        outputs: out.outputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape, contents: { fp32_contents: t.data } })),
      };
    }),
  };
}

/** Starts a worker in this process; resolves once it listens (port 0 → an OS-assigned port). */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const model = options.model;
  if (!model || typeof model.predict !== 'function') throw new TypeError(expected('options.model', 'a ServingModel', model));
  const host = options.host ?? '127.0.0.1';
  const protocol = options.protocol ?? 'http';
  if (protocol !== 'http' && protocol !== 'grpc') throw new RangeError(expected('options.protocol', "'http' or 'grpc'", protocol));
  const engine = new Engine(model, options.faults ?? {}, options.onDie ?? (() => process.kill(process.pid, 'SIGKILL')));
  const metadata = modelMetadata(model);
  sizeOf(model.outputShape);

  if (protocol === 'http') {
    const server: Server = createServer(httpHandler(engine, metadata));
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => resolve());
    });
    return {
      port: (server.address() as AddressInfo).port,
      host,
      protocol,
      metadata,
      get requests() { return engine.requests; },
      close: () => new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    };
  }

  const server = new grpc.Server();
  server.addService(inferenceService(), grpcHandlers(engine, metadata));
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${options.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    port,
    host,
    protocol,
    metadata,
    get requests() { return engine.requests; },
    close: () => new Promise<void>((resolve) => {
      server.tryShutdown(() => resolve());
      // In-flight calls are cut after a grace period so close never hangs on a slow request.
      setTimeout(() => server.forceShutdown(), 1000).unref();
    }),
  };
}

/** The message a worker process sends its parent (IPC) or prints (stdout) once it listens. */
export interface ListeningMessage {
  type: 'listening';
  port: number;
  host: string;
  protocol: WorkerProtocol;
  metadata: V2ModelMetadata;
  pid: number;
}

function parseArgs(argv: string[]): { model: string; port: number; host: string; protocol: WorkerProtocol; faults: FaultOptions } {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new RangeError(expected(`argument ${i + 1}`, 'an option like --port', a));
    const eq = a.indexOf('=');
    if (eq > 0) args.set(a.slice(2, eq), a.slice(eq + 1));
    else {
      const v = argv[++i];
      if (v === undefined) throw new RangeError(expected(`the value of ${a}`, 'a value', 'nothing', true));
      args.set(a.slice(2), v);
    }
  }
  const known = new Set(['model', 'port', 'host', 'protocol', 'delay-ms', 'slow-prob', 'slow-ms', 'burn-ms', 'die-after', 'hang-after', 'seed']);
  for (const k of args.keys()) if (!known.has(k)) throw new RangeError(expected('an option', [...known].map((x) => `--${x}`).join(', '), `--${k}`, true));
  const num = (key: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined => {
    if (!args.has(key)) return undefined;
    const v = Number(args.get(key));
    if (!Number.isFinite(v) || v < min || v > max) throw new RangeError(expected(`--${key}`, `a number in [${min}, ${max}]`, args.get(key), true));
    return v;
  };
  const model = args.get('model');
  if (!model) throw new RangeError(expected('--model', 'a model spec (linear:in=…,out=…, module:<path> or file:<path>)', 'nothing', true));
  const protocol = (args.get('protocol') ?? 'http') as WorkerProtocol;
  if (protocol !== 'http' && protocol !== 'grpc') throw new RangeError(expected('--protocol', "'http' or 'grpc'", protocol));
  return {
    model,
    port: num('port', 0, 65535) ?? 0,
    host: args.get('host') ?? '127.0.0.1',
    protocol,
    faults: {
      delayMs: num('delay-ms'),
      slowProbability: num('slow-prob', 0, 1),
      slowMs: num('slow-ms'),
      burnMs: num('burn-ms'),
      dieAfter: num('die-after'),
      hangAfter: num('hang-after'),
      seed: num('seed'),
    },
  };
}

/** Command-line entry: start a worker and report its port. */
export async function workerMain(argv: string[]): Promise<void> {
  const opts = parseArgs(argv);
  const model = await loadModelSpec(opts.model);
  const worker = await startWorker({ model, port: opts.port, host: opts.host, protocol: opts.protocol, faults: opts.faults });
  const msg: ListeningMessage = { type: 'listening', port: worker.port, host: worker.host, protocol: worker.protocol, metadata: worker.metadata, pid: process.pid };
  if (process.send) process.send(msg);
  else process.stdout.write(`${JSON.stringify(msg)}\n`);
  const stop = () => void worker.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // A forked worker must not outlive its parent: the IPC channel closing means the parent is gone.
  process.once('disconnect', stop);
}


runIfMain(import.meta.url, 'kintsugi worker', workerMain);
