// Clients for one v2 inference server (one of our workers, or a Triton server), over HTTP/JSON
// or gRPC. Every call has a timeout and can be aborted, and every failure becomes a ServingError
// whose message names the server, so the frontend can always answer with an explicit error.
import { Agent, request as httpRequest } from 'node:http';

import * as grpc from '@grpc/grpc-js';

import { httpStatusOfGrpc, inferenceClientConstructor } from './grpc.js';
import { expected, parseInferResponse, ServingError, type V2InferRequest, type V2ModelMetadata } from './protocol.js';

export interface InferCall {
  model: string;
  inputName: string;
  /** Row-major samples. */
  batch: Float32Array;
  rows: number;
  inputShape: readonly number[];
  outputShape: readonly number[];
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface WorkerClient {
  readonly url: string;
  /** Live, ready and serving `model`; false (never a rejection) when any of that fails. */
  ready(model: string, timeoutMs: number): Promise<boolean>;
  metadata(model: string, timeoutMs: number): Promise<V2ModelMetadata>;
  /** Resolves with rows × outputSize values. */
  infer(call: InferCall): Promise<Float32Array>;
  close(): void;
}

/** `http://host:port` or `grpc://host:port`. */
export function createWorkerClient(url: string): WorkerClient {
  const m = /^(http|grpc):\/\/([^/:]+|\[[^\]]+\]):(\d+)\/?$/.exec(url);
  if (!m) throw new RangeError(expected('worker url', "'http://host:port' or 'grpc://host:port'", url));
  return m[1] === 'http' ? new HttpWorkerClient(m[2], Number(m[3])) : new GrpcWorkerClient(m[2], Number(m[3]));
}

class HttpWorkerClient implements WorkerClient {
  readonly url: string;
  // Keep-alive: a new TCP connection per query would dominate the latency of a small model.
  #agent = new Agent({ keepAlive: true, maxSockets: 64 });
  constructor(readonly host: string, readonly port: number) {
    this.url = `http://${host}:${port}`;
  }

  #request(method: string, path: string, body: unknown, timeoutMs: number, signal?: AbortSignal): Promise<{ status: number; json: unknown }> {
    return new Promise((resolve, reject) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      let settled = false;
      const fail = (err: ServingError) => {
        if (settled) return;
        settled = true;
        req.destroy();
        reject(err);
      };
      const req = httpRequest({
        host: this.host, port: this.port, method, path, agent: this.#agent,
        headers: text === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => fail(new ServingError(502, `Worker ${this.url} broke off its response: ${err.message}`)));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const raw = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = raw ? JSON.parse(raw) : null;
          } catch {
            reject(new ServingError(502, expected(`the response of worker ${this.url}`, 'JSON', raw.slice(0, 60))));
            return;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      });
      const timer = setTimeout(() => fail(new ServingError(504, `Worker ${this.url} did not answer ${method} ${path} within ${timeoutMs} ms`)), timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        fail(new ServingError(503, `Worker ${this.url} is unreachable: ${err.message}`));
      });
      if (signal) {
        const onAbort = () => {
          clearTimeout(timer);
          fail(new ServingError(503, `Worker ${this.url} went away during ${method} ${path}: ${String(signal.reason ?? 'aborted')}`));
        };
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        req.on('close', () => signal.removeEventListener('abort', onAbort));
      }
      req.end(text);
    });
  }

  #check(status: number, json: unknown, what: string): void {
    if (status === 200) return;
    const msg = json && typeof json === 'object' && typeof (json as { error?: unknown }).error === 'string' ? (json as { error: string }).error : `HTTP ${status}`;
    // A 4xx from a worker means the frontend and the worker disagree (model or shape): a 502 to our client.
    throw new ServingError(status >= 500 ? status : 502, `Worker ${this.url} refused ${what}: ${msg}`);
  }

  async ready(model: string, timeoutMs: number): Promise<boolean> {
    try {
      const r = await this.#request('GET', '/v2/health/ready', undefined, timeoutMs);
      if (r.status !== 200) return false;
      const m = await this.#request('GET', `/v2/models/${encodeURIComponent(model)}/ready`, undefined, timeoutMs);
      return m.status === 200;
    } catch {
      return false;
    }
  }

  async metadata(model: string, timeoutMs: number): Promise<V2ModelMetadata> {
    const r = await this.#request('GET', `/v2/models/${encodeURIComponent(model)}`, undefined, timeoutMs);
    this.#check(r.status, r.json, `metadata of model '${model}'`);
    return r.json as V2ModelMetadata;
  }

  async infer(call: InferCall): Promise<Float32Array> {
    const body: V2InferRequest = { inputs: [{ name: call.inputName, shape: [call.rows, ...call.inputShape], datatype: 'FP32', data: Array.from(call.batch) }] };
    const r = await this.#request('POST', `/v2/models/${encodeURIComponent(call.model)}/infer`, body, call.timeoutMs, call.signal);
    this.#check(r.status, r.json, `an inference of model '${call.model}'`);
    return parseInferResponse(r.json, call.rows, call.outputShape, `worker ${this.url}`);
  }

  close(): void {
    this.#agent.destroy();
  }
}

interface GrpcOutput {
  shape: number[];
  contents?: { fp32_contents?: number[] } | null;
}

type GenericClient = grpc.Client & Record<string, (...args: unknown[]) => grpc.ClientUnaryCall>;

class GrpcWorkerClient implements WorkerClient {
  readonly url: string;
  #client: GenericClient;
  constructor(host: string, port: number) {
    this.url = `grpc://${host}:${port}`;
    const Ctor = inferenceClientConstructor();
    this.#client = new Ctor(`${host}:${port}`, grpc.credentials.createInsecure()) as GenericClient;
  }

  #call<T>(method: string, req: unknown, timeoutMs: number, signal?: AbortSignal): Promise<T> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const call = this.#client[method](req, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: T) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (!err) return resolve(res);
        const status = httpStatusOfGrpc(err.code);
        const what = status === 504 ? `did not answer ${method} within ${timeoutMs} ms` : status === 503 ? `is unreachable (${method}): ${err.details}` : `refused ${method}: ${err.details}`;
        reject(new ServingError(status === 400 || status === 404 ? 502 : status, `Worker ${this.url} ${what}`));
      });
      const onAbort = () => {
        if (settled) return;
        settled = true;
        call.cancel();
        reject(new ServingError(503, `Worker ${this.url} went away during ${method}: ${String(signal?.reason ?? 'aborted')}`));
      };
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async ready(model: string, timeoutMs: number): Promise<boolean> {
    try {
      const s = await this.#call<{ ready: boolean }>('ServerReady', {}, timeoutMs);
      if (!s.ready) return false;
      const m = await this.#call<{ ready: boolean }>('ModelReady', { name: model }, timeoutMs);
      return m.ready;
    } catch {
      return false;
    }
  }

  metadata(model: string, timeoutMs: number): Promise<V2ModelMetadata> {
    return this.#call<V2ModelMetadata>('ModelMetadata', { name: model }, timeoutMs);
  }

  async infer(call: InferCall): Promise<Float32Array> {
    const req = {
      model_name: call.model,
      inputs: [{ name: call.inputName, datatype: 'FP32', shape: [call.rows, ...call.inputShape], contents: { fp32_contents: Array.from(call.batch) } }],
    };
    const res = await this.#call<{ outputs: GrpcOutput[]; raw_output_contents?: Buffer[] }>('ModelInfer', req, call.timeoutMs, call.signal);
    // Triton answers with raw (little-endian) output bytes; our workers with typed contents.
    const raw = res.raw_output_contents?.[0];
    const data = raw && raw.length > 0 ? Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length))) : res.outputs?.[0]?.contents?.fp32_contents;
    return parseInferResponse({ outputs: [{ data }] }, call.rows, call.outputShape, `worker ${this.url}`);
  }

  close(): void {
    this.#client.close();
  }
}
