// safetensors, written and read by us: 8-byte little-endian header length N, N bytes of JSON
// ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}), then the
// raw little-endian data; offsets are relative to the end of the header. Files load in Python's
// `safetensors` too, so weights move between the two. Every field is checked on read: a truncated
// or corrupted file fails with what was expected where, never with a garbage tensor.
import { Tensor, type DType } from '../tensor.js';
import { rangeError, typeError } from '../validate.js';

const toFormat: Record<DType, string> = { float32: 'F32', float64: 'F64', int32: 'I32', uint8: 'U8' };
const fromFormat: Record<string, { dtype: DType; bytes: number }> = {
  F32: { dtype: 'float32', bytes: 4 },
  F64: { dtype: 'float64', bytes: 8 },
  I32: { dtype: 'int32', bytes: 4 },
  U8: { dtype: 'uint8', bytes: 1 },
};

// Header sizes above this are certainly corruption (the format's own reader caps at 100 MB).
const MAX_HEADER = 100_000_000;

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

/** Serialises tensors (contiguous copies are made where needed) and string metadata. */
export function encodeSafetensors(tensors: Map<string, Tensor> | Record<string, Tensor>, metadata: Record<string, string> = {}): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw typeError(`metadata.${k}`, 'a string', v);
  }
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of entries) {
    if (!(t instanceof Tensor)) throw typeError(`tensors.${name}`, 'a Tensor', t);
    if (name === '__metadata__') throw rangeError('tensor name', 'a name other than __metadata__', name);
    const data = t.contiguousData();
    // Typed arrays are little-endian on every platform Node runs on (x64, arm64).
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    header[name] = { dtype: toFormat[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data starts 8-byte aligned (the format allows trailing whitespace).
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Parses a safetensors file; `name` (usually the path) appears in every error. */
export function decodeSafetensors(bytes: Uint8Array, name = 'safetensors data'): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) throw typeError(name, 'a Uint8Array / Buffer', bytes);
  if (bytes.length < 8) throw rangeError(name, 'at least 8 bytes (the header length)', `${bytes.length} bytes (truncated)`, true);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength < 2n || headerLength > BigInt(Math.min(MAX_HEADER, bytes.length - 8))) {
    throw rangeError(`${name} header length`, `a length in [2, ${Math.min(MAX_HEADER, bytes.length - 8)}] (the file has ${bytes.length} bytes)`, `${headerLength} (truncated or not a safetensors file)`, true);
  }
  const n = Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (err) {
    throw typeError(`${name} header`, 'valid UTF-8 JSON', `unparseable text (${(err as Error).message})`, true);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw typeError(`${name} header`, 'a JSON object', header);
  const dataStart = 8 + n;
  const dataLength = bytes.length - dataStart;
  const tensors = new Map<string, Tensor>();
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw typeError(`${name} __metadata__`, 'an object of strings', value);
      for (const [mk, mv] of Object.entries(value)) if (typeof mv !== 'string') throw typeError(`${name} __metadata__.${mk}`, 'a string', mv);
      metadata = value as Record<string, string>;
      continue;
    }
    const where = `${name} tensor "${key}"`;
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (info === null || typeof info !== 'object') throw typeError(where, 'an object {dtype, shape, data_offsets}', info);
    const format = typeof info.dtype === 'string' ? fromFormat[info.dtype] : undefined;
    if (!format) throw rangeError(`${where} dtype`, `one of ${Object.keys(fromFormat).join(' | ')}`, info.dtype);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw typeError(`${where} shape`, 'an array of non-negative integers', shape);
    const offs = info.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isInteger(d) && d >= 0) || offs[1] < offs[0]) {
      throw typeError(`${where} data_offsets`, 'a pair [begin, end] of integers with begin ≤ end', JSON.stringify(offs), true);
    }
    const [begin, end] = offs as [number, number];
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== count * format.bytes) {
      throw rangeError(`${where} data_offsets`, `${count * format.bytes} bytes for ${info.dtype} [${shape}]`, `${end - begin} bytes`, true);
    }
    if (end > dataLength) throw rangeError(`${where} data_offsets`, `an end within the ${dataLength} data bytes`, `${end} (file truncated)`, true);
    spans.push([begin, end, key]);
    // Copy into a fresh, aligned buffer: the file's bytes need not be aligned for Float32Array.
    // (Uint8Array's slice, not Buffer's, which returns a view into the same memory.)
    const raw = Uint8Array.prototype.slice.call(bytes, dataStart + begin, dataStart + end);
    const Ctor = { float32: Float32Array, float64: Float64Array, int32: Int32Array, uint8: Uint8Array }[format.dtype];
    const data = new Ctor(raw.buffer, 0, count);
    tensors.set(key, new Tensor(data, shape as number[]));
  }
  // The format requires the tensors to tile the data region: overlaps or holes mean corruption.
  spans.sort((a, b) => a[0] - b[0]);
  let expect = 0;
  for (const [begin, end, key] of spans) {
    if (begin !== expect) throw rangeError(`${name} tensor "${key}" data_offsets`, `a begin of ${expect} (tensors tile the data without gaps or overlaps)`, begin, true);
    expect = end;
  }
  if (expect !== dataLength) throw rangeError(name, `${dataStart + expect} bytes (header + data)`, `${bytes.length} bytes (trailing or missing data)`, true);
  return { tensors, metadata };
}
