// Overhead benchmark: none / global / thread / intensity-guided on DLRM MLP layers at small
// batch (memory-bound), ResNet-50 conv layers in GEMM form and DeepBench-like squares.
// Interleaved repetitions, medians (the machine is shared and noisy).
import {
  cpuInfo, cudaAbftWorkspaceBytes, cudaGemm, cudaGemmCheckedLaunch, cudaWeightChecksums, DeviceTensor, numThreads, Tensor, timeCuda,
} from '@kintsugi/cuda-core';

import { cudaIndex, protectedGemm, weightChecksums, type Scheme } from './gemm.js';
import { confirmedScheme, cudaMachineBalance, intensityRule, machineBalance, timeSchemes, type MachineBalance } from './select.js';

export interface OverheadRow {
  suite: string;
  layer: string;
  m: number;
  n: number;
  k: number;
  intensity: number;
  noneMs: number;
  globalPct: number;
  threadPct: number;
  guidedPct: number;
  prior: Scheme;
  choice: Scheme;
}

export function overheadLayers(quick = false): { suite: string; layer: string; m: number; n: number; k: number }[] {
  const rows: { suite: string; layer: string; m: number; n: number; k: number }[] = [];
  for (const batch of quick ? [1, 8] : [1, 2, 4, 8]) {
    const bottom = [13, 512, 256, 64], top = [512, 512, 256, 1];
    for (let i = 0; i + 1 < bottom.length; i++) rows.push({ suite: 'dlrm-bottom', layer: `${bottom[i]}-${bottom[i + 1]} b${batch}`, m: batch, n: bottom[i + 1], k: bottom[i] });
    for (let i = 0; i + 1 < top.length; i++) rows.push({ suite: 'dlrm-top', layer: `${top[i]}-${top[i + 1]} b${batch}`, m: batch, n: top[i + 1], k: top[i] });
  }
  // ResNet-50 (224x224, batch 1) convs as C^T = col^T · W^T: M = OH·OW, N = Cout, K = Cin·KH·KW.
  const resnet: [string, number, number, number][] = [
    ['conv2 1x1 64-64', 3136, 64, 64], ['conv2 3x3 64-64', 3136, 64, 576], ['conv2 1x1 64-256', 3136, 256, 64],
    ['conv3 3x3 128-128', 784, 128, 1152], ['conv4 3x3 256-256', 196, 256, 2304], ['conv5 3x3 512-512', 49, 512, 4608],
  ];
  for (const [layer, m, n, k] of quick ? resnet.slice(0, 2) : resnet) rows.push({ suite: 'resnet50', layer, m, n, k });
  for (const s of quick ? [1024] : [1024, 1536]) rows.push({ suite: 'deepbench', layer: `${s}^3`, m: s, n: s, k: s });
  return rows;
}

export async function runOverhead(options: { quick?: boolean; reps?: number; onRow?: (r: OverheadRow) => void } = {}): Promise<{ machine: Awaited<ReturnType<typeof machineBalance>>; threads: number; rows: OverheadRow[] }> {
  const machine = await machineBalance();
  const rows: OverheadRow[] = [];
  for (const L of overheadLayers(options.quick)) {
    const x = Tensor.random([L.m, L.k], 3), w = Tensor.random([L.k, L.n], 4);
    const sums = weightChecksums(w);
    // One output reused by every call, as a deployed layer would: fresh pages cost 1-2.5 µs each
    // to fault in, which would swamp the checks on the larger layers.
    const out = Tensor.zeros([L.m, L.n]);
    const flops = 2 * L.m * L.n * L.k;
    // Samples of about 10 ms (at ~100 GFLOP/s), at least one call.
    const inner = Math.max(1, Math.min(2000, Math.round(1e9 / flops)));
    const run = async (s: Scheme) => {
      for (let i = 0; i < inner; i++) await protectedGemm(x, w, { scheme: s, checksums: sums, out });
    };
    const reps = options.reps ?? (flops > 1e9 ? 7 : 15);
    const t = await timeSchemes(run, ['none', 'global', 'thread'], reps);
    const rule = intensityRule(L.m, L.n, L.k, machine.balance, ['global', 'thread']);
    // Intensity-guided: the rule's prior, overturned when a separate timing run (as protectModel's
    // confirmation does) finds the other scheme faster by more than OVERTURN_MARGIN of the layer.
    const confirm = await timeSchemes(run, ['none', 'global', 'thread'], reps);
    const choice = confirmedScheme(rule.prior, confirm, ['global', 'thread']);
    const none = t.none! / inner, pct = (s: Scheme) => (100 * (t[s]! - t.none!)) / t.none!;
    const row: OverheadRow = {
      suite: L.suite, layer: L.layer, m: L.m, n: L.n, k: L.k, intensity: rule.intensity, noneMs: none,
      globalPct: pct('global'), threadPct: pct('thread'), guidedPct: pct(choice), prior: rule.prior, choice,
    };
    rows.push(row);
    options.onRow?.(row);
  }
  return { machine, threads: numThreads(), rows };
}

export function overheadMarkdown(r: Awaited<ReturnType<typeof runOverhead>>): string {
  const lines = [
    `Machine: ${cpuInfo().brand}, ${r.threads} threads; measured peak ${(r.machine.peakFlops / 1e9).toFixed(1)} GFLOP/s, stream ${(r.machine.bandwidth / 1e9).toFixed(1)} GB/s, balance ${r.machine.balance.toFixed(1)} FLOP/B`,
    '',
    '| suite | layer | M x N x K | AI | none ms | global % | thread % | guided % | rule | choice |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const x of r.rows) {
    lines.push(`| ${x.suite} | ${x.layer} | ${x.m}x${x.n}x${x.k} | ${x.intensity.toFixed(1)} | ${x.noneMs.toFixed(4)} | ${x.globalPct.toFixed(1)} | ${x.threadPct.toFixed(1)} | ${x.guidedPct.toFixed(1)} | ${x.prior} | ${x.choice} |`);
  }
  return lines.join('\n');
}

export interface CudaOverheadRow extends OverheadRow {
  reason: string;
}

/**
 * The same layers on a GPU: none / global / thread / intensity-guided, each timed with CUDA
 * events (timeCuda) on clean runs (the check's flags stay on the device; nothing is read back),
 * weights' checksums precomputed, no allocation inside the timed loop.
 */
export async function runCudaOverhead(options: { device?: string; quick?: boolean; reps?: number; onRow?: (r: CudaOverheadRow) => void } = {}): Promise<{ machine: MachineBalance; rows: CudaOverheadRow[] }> {
  const device = cudaIndex(options.device ?? 'cuda:0');
  const machine = cudaMachineBalance(device, 'fp32');
  const rows: CudaOverheadRow[] = [];
  for (const L of overheadLayers(options.quick)) {
    const x = await DeviceTensor.from(Tensor.random([L.m, L.k], 3), { device });
    const w = await DeviceTensor.from(Tensor.random([L.k, L.n], 4), { device });
    const out = DeviceTensor.empty([L.m, L.n], { device });
    const sums = cudaWeightChecksums(w);
    const ws = DeviceTensor.empty([Math.max(cudaAbftWorkspaceBytes('global', L.k, { weightChecksums: true }), cudaAbftWorkspaceBytes('thread', L.k))], { device, dtype: 'uint8' });
    try {
      const launch: Record<Scheme, () => void> = {
        none: () => { cudaGemm(x, w, { out }); },
        global: () => { cudaGemmCheckedLaunch(x, w, { scheme: 'global', weightChecksums: sums, out, workspace: ws }); },
        thread: () => { cudaGemmCheckedLaunch(x, w, { scheme: 'thread', out, workspace: ws }); },
      };
      const repeat = options.reps ?? 50;
      const t: Partial<Record<Scheme, number>> = {};
      for (const s of ['none', 'global', 'thread'] as const) t[s] = (await timeCuda(launch[s], { device, warmup: 5, repeat })).medianMs;
      const rule = intensityRule(L.m, L.n, L.k, machine.balance, ['global', 'thread']);
      const pct = (s: Scheme) => (100 * (t[s]! - t.none!)) / t.none!;
      const reason = `AI ${rule.intensity.toFixed(1)} ${rule.bound === 'memory' ? '<' : '≥'} balance ${machine.balance.toFixed(1)} FLOP/B: ${rule.bound}-bound → ${rule.prior}`;
      const row: CudaOverheadRow = {
        suite: L.suite, layer: L.layer, m: L.m, n: L.n, k: L.k, intensity: rule.intensity, noneMs: t.none!,
        globalPct: pct('global'), threadPct: pct('thread'), guidedPct: pct(rule.prior), prior: rule.prior, choice: rule.prior, reason,
      };
      rows.push(row);
      options.onRow?.(row);
    } finally {
      for (const d of [x, w, out, sums.sums, ws]) d.dispose();
    }
  }
  return { machine, rows };
}

export function cudaOverheadMarkdown(r: Awaited<ReturnType<typeof runCudaOverhead>>): string {
  const lines = [
    `Device: ${r.machine.device}; table peak ${(r.machine.peakFlops / 1e12).toFixed(1)} TFLOP/s, DRAM ${(r.machine.bandwidth / 1e9).toFixed(0)} GB/s, balance ${r.machine.balance.toFixed(1)} FLOP/B; CUDA-event medians`,
    '',
    '| suite | layer | M x N x K | AI | none ms | global % | thread % | guided % | choice | reason |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const x of r.rows) {
    lines.push(`| ${x.suite} | ${x.layer} | ${x.m}x${x.n}x${x.k} | ${x.intensity.toFixed(1)} | ${x.noneMs.toFixed(4)} | ${x.globalPct.toFixed(1)} | ${x.threadPct.toFixed(1)} | ${x.guidedPct.toFixed(1)} | ${x.choice} | ${x.reason} |`);
  }
  return lines.join('\n');
}
