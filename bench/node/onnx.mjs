// A minimal ONNX model writer: just enough protobuf (varints, length-delimited fields, fixed32 floats)
// to build MatMul / Conv / Gemm graphs in-process, so the peer benchmark needs neither Python nor the
// `onnx` package. Field numbers are those of onnx/onnx.proto (proto2):
//   ModelProto          ir_version=1 producer_name=2 graph=7 opset_import=8
//   OperatorSetIdProto  domain=1 version=2
//   GraphProto          node=1 name=2 initializer=5 input=11 output=12
//   NodeProto           input=1 output=2 name=3 op_type=4 attribute=5
//   AttributeProto      name=1 f=2 i=3 ints=8 type=20 (FLOAT=1, INT=2, INTS=7)
//   TensorProto         dims=1 data_type=2 (FLOAT=1) name=8 raw_data=9
//   ValueInfoProto      name=1 type=2
//   TypeProto           tensor_type=1;  TypeProto.Tensor elem_type=1 shape=2
//   TensorShapeProto    dim=1;  Dimension dim_value=1

const WIRE_VARINT = 0, WIRE_FIXED32 = 5, WIRE_BYTES = 2;
const FLOAT = 1; // TensorProto.DataType.FLOAT
const text = new TextEncoder();

/** Appends protobuf fields to a growable list of byte chunks; `finish()` concatenates them. */
class Writer {
  chunks = [];
  length = 0;

  #push(bytes) {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  // Varints are written from a BigInt so int64 fields (dims, ir_version) are exact; negative values
  // use the 10-byte two's-complement form protobuf prescribes for int64.
  #varint(value) {
    let v = BigInt.asUintN(64, BigInt(value));
    const out = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      out.push(byte);
    } while (v !== 0n);
    this.#push(Uint8Array.from(out));
  }

  #tag(field, wire) {
    this.#varint((field << 3) | wire);
  }

  int(field, value) {
    this.#tag(field, WIRE_VARINT);
    this.#varint(value);
    return this;
  }

  float(field, value) {
    this.#tag(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.#push(b);
    return this;
  }

  bytes(field, value) {
    this.#tag(field, WIRE_BYTES);
    this.#varint(value.length);
    this.#push(value);
    return this;
  }

  string(field, value) {
    return this.bytes(field, text.encode(value));
  }

  message(field, writer) {
    return this.bytes(field, writer.finish());
  }

  finish() {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

/** A float32 initializer (constant weights, so ORT can prepack them at session creation). */
export function floatTensor(name, dims, data) {
  if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new RangeError(`initializer ${name}: ${data.length} values for dims [${dims}]`);
  const w = new Writer();
  for (const d of dims) w.int(1, d);
  w.int(2, FLOAT).string(8, name);
  // raw_data is little-endian IEEE 754, the layout of a Float32Array on every platform Node runs on.
  w.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return w;
}

/** A graph input or output: a float32 tensor of fixed shape. */
export function floatValue(name, dims) {
  const shape = new Writer();
  for (const d of dims) shape.message(1, new Writer().int(1, d));
  const tensorType = new Writer().int(1, FLOAT).message(2, shape);
  return new Writer().string(1, name).message(2, new Writer().message(1, tensorType));
}

/** Attributes as { name: number | number[] }: integers become INT/INTS, other numbers FLOAT. */
function attribute(name, value) {
  const w = new Writer().string(1, name);
  if (Array.isArray(value)) {
    for (const v of value) w.int(8, v);
    return w.int(20, 7);
  }
  if (Number.isInteger(value)) return w.int(3, value).int(20, 2);
  return w.float(2, value).int(20, 1);
}

export function node(opType, inputs, outputs, attributes = {}) {
  const w = new Writer();
  for (const i of inputs) w.string(1, i);
  for (const o of outputs) w.string(2, o);
  w.string(3, `${opType}_${outputs[0]}`).string(4, opType);
  for (const [k, v] of Object.entries(attributes)) w.message(5, attribute(k, v));
  return w;
}

/**
 * Serialises a ModelProto (IR version 8, default-domain opset 13).
 * @param {{ nodes: Writer[], initializers: Writer[], inputs: Writer[], outputs: Writer[], name?: string }} g
 */
export function model(g) {
  const graph = new Writer();
  for (const n of g.nodes) graph.message(1, n);
  graph.string(2, g.name ?? 'bench');
  for (const t of g.initializers) graph.message(5, t);
  for (const i of g.inputs) graph.message(11, i);
  for (const o of g.outputs) graph.message(12, o);
  const opset = new Writer().string(1, '').int(2, 13);
  return new Writer().int(1, 8).string(2, '@kintsugi/bench-node').message(7, graph).message(8, opset).finish();
}
