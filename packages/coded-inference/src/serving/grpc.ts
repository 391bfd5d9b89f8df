// gRPC plumbing shared by the worker (server) and the frontend's worker client: the
// GRPCInferenceService definition loaded from the proto text, and conversions between its messages
// and the JSON shapes of the HTTP protocol so both transports share one validation path.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

import { GRPC_PREDICT_V2_PROTO, ServingError, type V2InferRequest } from './protocol.js';

let cached: grpc.ServiceDefinition | null = null;

/** The GRPCInferenceService definition (parsed once per process). */
export function inferenceService(): grpc.ServiceDefinition {
  if (cached) return cached;
  const root = protobuf.parse(GRPC_PREDICT_V2_PROTO, { keepCase: true }).root;
  // longs: Number because shapes are small; defaults so absent fields read as '' / [] not undefined.
  const pkg = protoLoader.fromJSON(root.toJSON(), { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  cached = pkg['inference.GRPCInferenceService'] as grpc.ServiceDefinition;
  return cached;
}

/** A client constructor for the service (grpc-js's generic client over our definition). */
export function inferenceClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(inferenceService(), 'GRPCInferenceService');
}

interface GrpcTensor {
  name: string;
  datatype: string;
  shape: number[];
  contents?: { fp32_contents?: number[] } | null;
}

/**
 * A ModelInferRequest as the v2 JSON request it is equivalent to. Raw (binary) input contents are
 * read as little-endian FP32, which is how Triton clients send them.
 */
export function grpcRequestToV2(msg: { id?: string; inputs?: GrpcTensor[]; raw_input_contents?: Buffer[] }): V2InferRequest {
  const raw = msg.raw_input_contents ?? [];
  const inputs = (msg.inputs ?? []).map((t, i) => {
    let data: number[] = t.contents?.fp32_contents ?? [];
    if (raw.length > 0) {
      const buf = raw[i];
      if (!buf || buf.length % 4 !== 0) throw new ServingError(400, `Expected a multiple of 4 bytes for raw_input_contents[${i}] but received ${buf ? buf.length : 'none'}`);
      data = Array.from(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length)));
    }
    return { name: t.name, datatype: t.datatype, shape: t.shape.map(Number), data };
  });
  return { id: msg.id || undefined, inputs };
}

/** Maps a thrown error to a gRPC status error (ServingErrors keep their status). */
export function toGrpcError(err: unknown): Partial<grpc.StatusObject> & Error {
  const e = err instanceof ServingError ? err : new ServingError(500, (err as Error)?.message ?? String(err));
  return Object.assign(new Error(e.message), { code: e.grpcStatus, details: e.message });
}

/** Maps a gRPC status (from a worker) back to the HTTP-style status the frontend reports. */
export function httpStatusOfGrpc(code: number | undefined): number {
  switch (code) {
    case 3: return 400;
    case 5: return 404;
    case 4: return 504;
    case 14: return 503;
    default: return 502;
  }
}
