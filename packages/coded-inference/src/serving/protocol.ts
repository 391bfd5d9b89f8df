// The KServe v2 inference protocol as the serving layer speaks it: request/response shapes for
// HTTP/JSON, validation of untrusted requests with the project's one message shape
// ("Expected {expected} for {name} but received {actual}"), and the error type that carries an
// HTTP status and its gRPC equivalent. Keeping this shape exact is what lets a Triton server (or any
// v2 server) stand where one of our workers stands.

/** One tensor in a v2 request or response (JSON form: `data` is row-major, flattened). */
export interface V2Tensor {
  name: string;
  shape: number[];
  datatype: string;
  data: number[];
  parameters?: Record<string, unknown>;
}

export interface V2InferRequest {
  id?: string;
  inputs: V2Tensor[];
  outputs?: { name: string }[];
  parameters?: Record<string, unknown>;
}

export interface V2InferResponse {
  model_name: string;
  model_version?: string;
  id?: string;
  outputs: V2Tensor[];
  parameters?: Record<string, unknown>;
}

export interface V2TensorMetadata {
  name: string;
  datatype: string;
  /** -1 marks the batch dimension. */
  shape: number[];
}

export interface V2ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: V2TensorMetadata[];
  outputs: V2TensorMetadata[];
}

/** Status codes the serving layer uses, with the gRPC status each maps to. */
export const grpcStatusOf: Record<number, number> = {
  400: 3, // INVALID_ARGUMENT
  404: 5, // NOT_FOUND
  408: 4, // DEADLINE_EXCEEDED
  413: 8, // RESOURCE_EXHAUSTED
  500: 13, // INTERNAL
  502: 14, // UNAVAILABLE (the worker behind us failed)
  503: 14, // UNAVAILABLE
  504: 4, // DEADLINE_EXCEEDED
};

/** An error that becomes a v2 error response: `{ "error": message }` with an HTTP status. */
export class ServingError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, message: string, code = codeOf(status)) {
    super(message);
    this.name = 'ServingError';
    this.status = status;
    this.code = code;
  }
  get grpcStatus(): number {
    return grpcStatusOf[this.status] ?? 2; // UNKNOWN
  }
}

function codeOf(status: number): string {
  switch (status) {
    case 400: return 'KINTSUGI_BAD_REQUEST';
    case 404: return 'KINTSUGI_NOT_FOUND';
    case 504: return 'KINTSUGI_DEADLINE';
    case 502: case 503: return 'KINTSUGI_UNAVAILABLE';
    default: return 'KINTSUGI_SERVING';
  }
}

/** A short description of an untrusted value for error messages. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'object') return 'an object';
  return typeof value;
}

export function expected(name: string, what: string, actual: unknown, rawActual = false): string {
  return `Expected ${what} for ${name} but received ${rawActual ? String(actual) : describeValue(actual)}`;
}

export function badRequest(name: string, what: string, actual: unknown, rawActual = false): ServingError {
  return new ServingError(400, expected(name, what, actual, rawActual));
}

/** Parses a request body; malformed JSON is a 400 naming the parse error. */
export function parseJsonBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ServingError(400, `Expected a JSON request body for body but received malformed JSON (${(err as Error).message})`);
  }
}

/**
 * Checks a v2 infer request against a model's per-sample input shape and returns the batch as one
 * row-major Float32Array with its batch size. Accepts shape [n, ...sampleShape] (n ≥ 1) or
 * sampleShape alone (n = 1); only FP32, as every model here takes float32 tensors.
 */
export function parseInferRequest(body: unknown, sampleShape: readonly number[], inputName: string): { batch: Float32Array; rows: number; id?: string; parameters?: Record<string, unknown> } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('request body', 'a JSON object', body);
  const req = body as Record<string, unknown>;
  const inputs = req.inputs;
  if (!Array.isArray(inputs)) throw badRequest('inputs', 'an array of input tensors', inputs);
  if (inputs.length !== 1) throw badRequest('inputs', `exactly 1 input tensor ('${inputName}')`, `${inputs.length} tensors`, true);
  const tensor = inputs[0] as Record<string, unknown>;
  if (tensor === null || typeof tensor !== 'object' || Array.isArray(tensor)) throw badRequest('inputs[0]', 'a tensor object', tensor);
  if (typeof tensor.name !== 'string') throw badRequest('inputs[0].name', 'a string', tensor.name);
  if (tensor.name !== inputName) throw badRequest('inputs[0].name', `'${inputName}'`, tensor.name);
  if (tensor.datatype !== 'FP32') throw badRequest('inputs[0].datatype', "'FP32'", tensor.datatype);
  const shape = tensor.shape;
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) throw badRequest('inputs[0].shape', 'an array of non-negative integers', shape);
  const perRow = sampleShape.reduce((a, b) => a * b, 1);
  let rows: number;
  if (shape.length === sampleShape.length && shape.every((d, i) => d === sampleShape[i])) rows = 1;
  else if (shape.length === sampleShape.length + 1 && shape.slice(1).every((d, i) => d === sampleShape[i]) && shape[0] >= 1) rows = shape[0] as number;
  else throw badRequest('inputs[0].shape', `[n, ${sampleShape.join(', ')}] with n ≥ 1`, `[${shape.join(', ')}]`, true);
  const data = tensor.data;
  if (!Array.isArray(data)) throw badRequest('inputs[0].data', `an array of ${rows * perRow} numbers`, data);
  // v2 allows nested row-major arrays as well as flat ones.
  const flat = (data as unknown[]).flat(Infinity) as unknown[];
  if (flat.length !== rows * perRow) throw badRequest('inputs[0].data', `${rows * perRow} numbers (shape [${shape.join(', ')}])`, `${flat.length} numbers`, true);
  const batch = new Float32Array(flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest(`inputs[0].data[${i}]`, 'a finite number', v);
    batch[i] = v;
  }
  const id = typeof req.id === 'string' ? req.id : undefined;
  const parameters = req.parameters !== null && typeof req.parameters === 'object' ? (req.parameters as Record<string, unknown>) : undefined;
  return { batch, rows, id, parameters };
}

/** Checks a v2 infer response (from a worker or a Triton server) and returns its one output. */
export function parseInferResponse(body: unknown, rows: number, sampleShape: readonly number[], where: string): Float32Array {
  if (body === null || typeof body !== 'object') throw new ServingError(502, expected(`the response of ${where}`, 'a v2 infer response object', body));
  const outputs = (body as Record<string, unknown>).outputs;
  if (!Array.isArray(outputs) || outputs.length < 1) throw new ServingError(502, expected(`outputs in the response of ${where}`, 'an array with one output tensor', outputs));
  const out = outputs[0] as Record<string, unknown>;
  const perRow = sampleShape.reduce((a, b) => a * b, 1);
  const data = Array.isArray(out?.data) ? (out.data as unknown[]).flat(Infinity) : null;
  if (!data || data.length !== rows * perRow) {
    throw new ServingError(502, expected(`outputs[0].data in the response of ${where}`, `${rows * perRow} numbers`, data ? `${data.length} numbers` : describeValue(out?.data), true));
  }
  return Float32Array.from(data as number[]);
}

export function makeTensor(name: string, shape: number[], data: Float32Array): V2Tensor {
  return { name, shape, datatype: 'FP32', data: Array.from(data) };
}

/**
 * The subset of KServe's GRPCInferenceService (grpc_predict_v2.proto, package `inference`) that the
 * workers serve, with the public spec's message and field numbers so Triton clients and servers
 * interoperate. Kept as text in the module (not a .proto file beside it) so the compiled package
 * carries it without a copy step; `protobufjs` parses it at load time.
 */
export const GRPC_PREDICT_V2_PROTO = `
syntax = "proto3";
package inference;

service GRPCInferenceService {
  rpc ServerLive(ServerLiveRequest) returns (ServerLiveResponse) {}
  rpc ServerReady(ServerReadyRequest) returns (ServerReadyResponse) {}
  rpc ModelReady(ModelReadyRequest) returns (ModelReadyResponse) {}
  rpc ModelMetadata(ModelMetadataRequest) returns (ModelMetadataResponse) {}
  rpc ModelInfer(ModelInferRequest) returns (ModelInferResponse) {}
}

message ServerLiveRequest {}
message ServerLiveResponse { bool live = 1; }
message ServerReadyRequest {}
message ServerReadyResponse { bool ready = 1; }
message ModelReadyRequest { string name = 1; string version = 2; }
message ModelReadyResponse { bool ready = 1; }

message ModelMetadataRequest { string name = 1; string version = 2; }
message ModelMetadataResponse {
  message TensorMetadata {
    string name = 1;
    string datatype = 2;
    repeated int64 shape = 3;
  }
  string name = 1;
  repeated string versions = 2;
  string platform = 3;
  repeated TensorMetadata inputs = 4;
  repeated TensorMetadata outputs = 5;
}

message InferParameter {
  oneof parameter_choice {
    bool bool_param = 1;
    int64 int64_param = 2;
    string string_param = 3;
    double double_param = 4;
    uint64 uint64_param = 5;
  }
}

message InferTensorContents {
  repeated bool bool_contents = 1;
  repeated int32 int_contents = 2;
  repeated int64 int64_contents = 3;
  repeated uint32 uint_contents = 4;
  repeated uint64 uint64_contents = 5;
  repeated float fp32_contents = 6;
  repeated double fp64_contents = 7;
  repeated bytes bytes_contents = 8;
}

message ModelInferRequest {
  message InferInputTensor {
    string name = 1;
    string datatype = 2;
    repeated int64 shape = 3;
    map<string, InferParameter> parameters = 4;
    InferTensorContents contents = 5;
  }
  message InferRequestedOutputTensor {
    string name = 1;
    map<string, InferParameter> parameters = 2;
  }
  string model_name = 1;
  string model_version = 2;
  string id = 3;
  map<string, InferParameter> parameters = 4;
  repeated InferInputTensor inputs = 5;
  repeated InferRequestedOutputTensor outputs = 6;
  repeated bytes raw_input_contents = 7;
}

message ModelInferResponse {
  message InferOutputTensor {
    string name = 1;
    string datatype = 2;
    repeated int64 shape = 3;
    map<string, InferParameter> parameters = 4;
    InferTensorContents contents = 5;
  }
  string model_name = 1;
  string model_version = 2;
  string id = 3;
  map<string, InferParameter> parameters = 4;
  repeated InferOutputTensor outputs = 5;
  repeated bytes raw_output_contents = 6;
}
`;
