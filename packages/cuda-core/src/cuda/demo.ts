// The demo's GPU rows: each CUDA kernel on the first GPU, checked against a host computation,
// timed with CUDA events; cuBLAS beside our GEMM when it loads.
import { conv2dParams } from '../conv.js';
import { Tensor } from '../tensor.js';
import { convOutputAt, gemmProjectionError } from '../verify.js';
import { cudaProperties, DeviceTensor } from './memory.js';
import { cublasStatus, cudaChecksum, cudaConv2d, cudaGemm, cudaXorEncode, timeCuda } from './ops.js';

import type { Row as DemoRow } from '../cli.js';

const tflops = (flops: number, ms: number) => `${(flops / ms / 1e9).toFixed(1)} TFLOP/s`;
const gbps = (bytes: number, ms: number) => `${(bytes / ms / 1e6).toFixed(1)} GB/s`;

export async function gpuDemoRows(quick: boolean): Promise<DemoRow[]> {
  const rows: DemoRow[] = [];
  const props = cudaProperties(0);
  const cublas = cublasStatus();
  const backends = cublas.available ? (['kintsugi', 'cublas'] as const) : (['kintsugi'] as const);
  for (const s of quick ? [1024] : [1024, 4096]) {
    const a = Tensor.random([s, s], 1), b = Tensor.random([s, s], 2);
    for (const [dtype, tf32] of [['float16', false], ['bfloat16', false], ['float32', false], ['float32', true]] as const) {
      const da = await DeviceTensor.from(a, { dtype }), db = await DeviceTensor.from(b, { dtype });
      // The check uses the values the GPU saw (rounded to fp16/bf16 on upload).
      const [ha, hb] = [(await da.download()).data as Float32Array, (await db.download()).data as Float32Array];
      const out = DeviceTensor.empty([s, s], { device: 0 });
      for (const backend of backends) {
        const launch = () => cudaGemm(da, db, { out, tf32, backend });
        launch();
        const err = gemmProjectionError(ha, hb, (await out.download()).data as Float32Array, s, s, s);
        const t = await timeCuda(launch, { repeat: 10 });
        // fp32 accumulation: ~1e-7·k; TF32 rounds the inputs to 10 bits first (~1e-3).
        const limit = tf32 ? 5e-3 : 1e-4;
        rows.push({ kernel: `gemm ${tf32 ? 'tf32' : dtype} (${backend})`, size: `${s}x${s}x${s}`, ms: t.medianMs, rate: tflops(2 * s ** 3, t.medianMs),
          check: `proj err ${err.toExponential(1)}`, pass: err < limit });
      }
      for (const d of [da, db, out]) d.dispose();
    }
  }
  const x = Tensor.random([quick ? 8 : 32, 64, 56, 56], 5), w = Tensor.random([64, 64, 3, 3], 6);
  const p = conv2dParams(x.shape, w.shape, { padding: 1 });
  for (const dtype of ['float32', 'float16'] as const) {
    const dx = await DeviceTensor.from(x, { dtype }), dw = await DeviceTensor.from(w, { dtype });
    const [hx, hw] = [(await dx.download()).data as Float32Array, (await dw.download()).data as Float32Array];
    const y = cudaConv2d(dx, dw, null, { padding: 1 });
    const host = (await y.download()) as Tensor<'float32'>;
    let worst = 0;
    for (let i = 0; i < 64; i++) {
      const n = i % p.n, co = (i * 7919) % p.cOut, oy = (i * 104729) % p.outH, ox = (i * 1299709) % p.outW;
      const want = convOutputAt(hx, hw, p, n, co, oy, ox, null);
      worst = Math.max(worst, Math.abs(host.get(n, co, oy, ox) - want) / (1 + Math.abs(want)));
    }
    const t = await timeCuda(() => cudaConv2d(dx, dw, null, { padding: 1, out: y }), { repeat: 10 });
    rows.push({ kernel: `conv2d 3x3 ${dtype}`, size: `${x.shape.join('x')} * ${w.shape.join('x')}`, ms: t.medianMs, rate: tflops(p.flops, t.medianMs),
      check: `max err ${worst.toExponential(1)}`, pass: worst < (dtype === 'float32' ? 1e-4 : 5e-3) });
    for (const d of [dx, dw, y]) d.dispose();
  }
  const len = (quick ? 16 : 64) << 20, k = 4;
  const blocks = await Promise.all(Array.from({ length: k }, (_, i) => DeviceTensor.from(new Uint8Array(len).map((_, j) => (j * (i + 3) + i) & 255))));
  const parity = await cudaXorEncode(blocks);
  const recovered = await cudaXorEncode([parity, ...blocks.slice(1)]);
  const [want, got] = [(await blocks[0].download()).data, (await recovered.download()).data];
  const exact = Buffer.compare(want as Uint8Array, got as Uint8Array) === 0;
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) await cudaXorEncode(blocks, parity);
  const ms = (performance.now() - t0) / 5;
  rows.push({ kernel: 'xor parity encode', size: `${k} x ${len >> 20} MiB`, ms, rate: gbps((k + 1) * len, ms), check: exact ? 'decode exact' : 'decode WRONG', pass: exact });
  const m = 4096;
  const da = await DeviceTensor.from(Tensor.random([m, m], 9));
  const sums = (await cudaChecksum(da, 'rows').download()).data as Float64Array;
  const cols = (await cudaChecksum(da, 'cols').download()).data as Float64Array;
  const totalRows = sums.reduce((acc, v) => acc + v, 0), totalCols = cols.reduce((acc, v) => acc + v, 0);
  const tc = await timeCuda(() => cudaChecksum(da, 'rows'), { repeat: 10 });
  rows.push({ kernel: 'row checksums (fp64 acc.)', size: `${m}x${m}`, ms: tc.medianMs, rate: gbps(4 * m * m, tc.medianMs),
    check: Math.abs(totalRows - totalCols) < 1e-6 * m ? 'totals agree' : 'totals differ', pass: Math.abs(totalRows - totalCols) < 1e-6 * m });
  for (const d of [...blocks, parity, recovered, da]) d.dispose();
  console.log(`GPU: ${props.name} (sm_${props.major}${props.minor}, ${props.multiprocessors} SMs, ${(props.totalMemory / 2 ** 30).toFixed(0)} GiB); cuBLAS: ${cublas.available ? cublas.library : cublas.reason}`);
  return rows;
}
