// The worker's KServe v2 surface over HTTP/JSON and gRPC, against real worker processes.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { inferenceService, loadModelSpec, type ListeningMessage, type ServingModel } from '../../src/serving/index.js';
import { ensureBuilt, get, post, runWorkerCli, spawnWorker } from './helpers.js';

const SPEC = 'linear:in=6,out=3,seed=7,name=lin';
let model: ServingModel;
const x = Float32Array.from([1, -2, 0.5, 3, 0, -1, 0.25, 0.5, 0.75, 1, 1.25, 1.5]);

beforeAll(async () => {
  await ensureBuilt();
  model = await loadModelSpec(SPEC);
});

function close(a: ArrayLike<number>, b: ArrayLike<number>) {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i], 5);
}

describe('HTTP/JSON worker (KServe v2)', () => {
  let w: Awaited<ReturnType<typeof spawnWorker>>;
  let base = '';
  beforeAll(async () => {
    w = await spawnWorker(['--model', SPEC, '--port', '0']);
    base = `http://127.0.0.1:${w.msg.port}`;
  });
  afterAll(() => w?.kill());

  it('reports an OS-assigned port on 127.0.0.1 and answers health and metadata', async () => {
    expect(w.msg.host).toBe('127.0.0.1');
    expect(w.msg.port).toBeGreaterThan(0);
    expect(await get(`${base}/v2/health/live`)).toEqual({ status: 200, json: { live: true } });
    expect(await get(`${base}/v2/health/ready`)).toEqual({ status: 200, json: { ready: true } });
    const md = await get(`${base}/v2/models/lin`);
    expect(md.status).toBe(200);
    expect(md.json).toMatchObject({ name: 'lin', inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 6] }], outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 3] }] });
    expect((await get(`${base}/v2/models/lin/ready`)).status).toBe(200);
  });

  it('infers a batch and returns the v2 response shape with the model\'s values', async () => {
    const r = await post(`${base}/v2/models/lin/infer`, { id: 'q1', inputs: [{ name: 'input', shape: [2, 6], datatype: 'FP32', data: Array.from(x) }] });
    expect(r.status).toBe(200);
    expect(r.json.model_name).toBe('lin');
    expect(r.json.id).toBe('q1');
    const out = (r.json.outputs as { name: string; shape: number[]; datatype: string; data: number[] }[])[0];
    expect(out).toMatchObject({ name: 'output', shape: [2, 3], datatype: 'FP32' });
    close(out.data, await model.predict(x, 2));
    // A single sample may omit the batch dimension.
    const one = await post(`${base}/v2/models/lin/infer`, { inputs: [{ name: 'input', shape: [6], datatype: 'FP32', data: Array.from(x.subarray(0, 6)) }] });
    close((one.json.outputs as { data: number[] }[])[0].data, await model.predict(x.slice(0, 6), 1));
  });

  it('answers bad requests with 4xx and "Expected … for … but received …"', async () => {
    const infer = (body: unknown) => post(`${base}/v2/models/lin/infer`, body);
    const shape = await infer({ inputs: [{ name: 'input', shape: [2, 5], datatype: 'FP32', data: Array(10).fill(0) }] });
    expect(shape).toEqual({ status: 400, json: { error: 'Expected [n, 6] with n ≥ 1 for inputs[0].shape but received [2, 5]' } });
    const dtype = await infer({ inputs: [{ name: 'input', shape: [1, 6], datatype: 'INT32', data: Array(6).fill(0) }] });
    expect(dtype).toEqual({ status: 400, json: { error: 'Expected \'FP32\' for inputs[0].datatype but received "INT32"' } });
    const count = await infer({ inputs: [{ name: 'input', shape: [2, 6], datatype: 'FP32', data: Array(11).fill(0) }] });
    expect(count.json.error).toBe('Expected 12 numbers (shape [2, 6]) for inputs[0].data but received 11 numbers');
    const value = await infer({ inputs: [{ name: 'input', shape: [1, 6], datatype: 'FP32', data: [0, 0, 'a', 0, 0, 0] }] });
    expect(value.json.error).toBe('Expected a finite number for inputs[0].data[2] but received "a"');
    const malformed = await post(`${base}/v2/models/lin/infer`, '{"inputs": [');
    expect(malformed.status).toBe(400);
    expect(malformed.json.error).toMatch(/^Expected a JSON request body for body but received malformed JSON/);
    const noInputs = await infer({});
    expect(noInputs.json.error).toBe('Expected an array of input tensors for inputs but received undefined');
    const wrongModel = await post(`${base}/v2/models/nope/infer`, { inputs: [] });
    expect(wrongModel).toEqual({ status: 404, json: { error: 'Expected \'lin\' for model name but received "nope"' } });
    expect((await get(`${base}/v2/models/nope`)).status).toBe(404);
    const path = await get(`${base}/v3/whatever`);
    expect(path.status).toBe(404);
    expect(path.json.error).toMatch(/^Expected a KServe v2 endpoint .* for the path but received "\/v3\/whatever"$/);
  });

  it('rejects bad command lines with a clear message and exit code 2', async () => {
    const r = await runWorkerCli(['--model', 'linear:in=0,out=3']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("Expected a positive integer for in in model spec 'linear:in=0,out=3' but received 0");
    const p = await runWorkerCli(['--model', SPEC, '--protocol', 'smtp']);
    expect(p.stderr).toContain('Expected \'http\' or \'grpc\' for --protocol but received "smtp"');
  });
});

describe('gRPC worker (KServe GRPCInferenceService)', () => {
  let w: Awaited<ReturnType<typeof spawnWorker>>;
  let client: grpc.Client & Record<string, (...a: unknown[]) => unknown>;
  const call = <T>(method: string, req: unknown) =>
    new Promise<T>((resolve, reject) => (client[method] as (r: unknown, cb: (e: grpc.ServiceError | null, v: T) => void) => void)(req, (e, v) => (e ? reject(e) : resolve(v))));

  beforeAll(async () => {
    w = await spawnWorker(['--model', SPEC, '--port', '0', '--protocol', 'grpc']);
    const Ctor = grpc.makeGenericClientConstructor(inferenceService(), 'GRPCInferenceService');
    client = new Ctor(`127.0.0.1:${w.msg.port}`, grpc.credentials.createInsecure()) as typeof client;
  });
  afterAll(() => {
    client?.close();
    w?.kill();
  });

  it('answers ServerLive, ServerReady, ModelReady and ModelMetadata', async () => {
    expect((w.msg as ListeningMessage).protocol).toBe('grpc');
    expect(await call('ServerLive', {})).toEqual({ live: true });
    expect(await call('ServerReady', {})).toEqual({ ready: true });
    expect(await call('ModelReady', { name: 'lin' })).toEqual({ ready: true });
    expect(await call('ModelReady', { name: 'other' })).toEqual({ ready: false });
    const md = await call<{ name: string; inputs: { shape: number[] }[] }>('ModelMetadata', { name: 'lin' });
    expect(md.name).toBe('lin');
    expect(md.inputs[0].shape).toEqual([-1, 6]);
  });

  it('infers from typed contents and from raw little-endian bytes (as Triton clients send)', async () => {
    const expectOut = await model.predict(x, 2);
    const typed = await call<{ model_name: string; outputs: { name: string; shape: number[]; datatype: string; contents: { fp32_contents: number[] } }[] }>('ModelInfer', {
      model_name: 'lin', id: 'g1', inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 6], contents: { fp32_contents: Array.from(x) } }],
    });
    expect(typed.model_name).toBe('lin');
    expect(typed.outputs[0]).toMatchObject({ name: 'output', datatype: 'FP32', shape: [2, 3] });
    close(typed.outputs[0].contents.fp32_contents, expectOut);
    const raw = await call<{ outputs: { contents: { fp32_contents: number[] } }[] }>('ModelInfer', {
      model_name: 'lin', inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 6] }], raw_input_contents: [Buffer.from(x.buffer.slice(0))],
    });
    close(raw.outputs[0].contents.fp32_contents, expectOut);
  });

  it('maps bad requests to INVALID_ARGUMENT and unknown models to NOT_FOUND, with the same messages', async () => {
    const bad = await call('ModelInfer', { model_name: 'lin', inputs: [{ name: 'input', datatype: 'FP64', shape: [1, 6], contents: { fp32_contents: [0, 0, 0, 0, 0, 0] } }] }).catch((e: grpc.ServiceError) => e);
    expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((bad as grpc.ServiceError).details).toBe('Expected \'FP32\' for inputs[0].datatype but received "FP64"');
    const missing = await call('ModelInfer', { model_name: 'nope', inputs: [] }).catch((e: grpc.ServiceError) => e);
    expect((missing as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
    expect((missing as grpc.ServiceError).details).toBe('Expected \'lin\' for model name but received "nope"');
  });
});
