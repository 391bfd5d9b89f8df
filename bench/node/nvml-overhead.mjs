#!/usr/bin/env node
// What NVML sampling costs: the sampler thread's CPU time as a share of one core at 10, 100 and
// 1000 Hz (from CLOCK_THREAD_CPUTIME_ID), with the whole process's CPU share beside it (that adds
// the JS timer that drains the samples). Uses the real libnvidia-ml.so.1 when it loads, else the
// mock library from the native test build, and says which.
//
//   node bench/node/nvml-overhead.mjs [--seconds S] [--json PATH]
import { execSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { NvmlSampler, nvmlAvailable, nvmlDevices } from '@kintsugi/cuda-core';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const seconds = Number(opt('--seconds', '3'));
const jsonPath = opt('--json', '');
if (!(seconds > 0)) throw new Error(`Expected a positive number for --seconds but received ${opt('--seconds')}`);

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const mock = resolve(root, 'native/build/libmock_nvml.so');
let library, which;
const real = nvmlAvailable();
if (real.available) {
  which = process.env.KINTSUGI_NVML_LIBRARY ? `NVML from KINTSUGI_NVML_LIBRARY (${real.library})` : `real NVML (${real.library})`;
} else if (existsSync(mock)) {
  library = mock;
  which = `mock NVML (${mock}): no real NVML here (${real.reason})`;
} else {
  console.error(`No NVML (${real.reason}) and no mock library at ${mock}: build the native tests first (the install does).`);
  process.exit(1);
}
const device = nvmlDevices(library)[0];
let commit = 'unknown';
try {
  commit = execSync('git rev-parse --short HEAD', { cwd: root, encoding: 'utf8' }).trim();
} catch {}

console.log(`## NVML sampling overhead\n`);
console.log(`- ${which}; device 0: ${device.name}`);
console.log(`- commit ${commit}, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} logical CPUs, Node ${process.version}`);
console.log(`- ${seconds} s per rate; the process is otherwise idle; "thread" = the native sampler thread's CPU time / wall time`);
console.log(`- "process" = the whole process's CPU time / wall time over the same window (adds the JS drain timer, GC, the event loop)\n`);
console.log('| rate | interval | samples | drops | late ticks | thread CPU % of a core | CPU µs / sample | process CPU % |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');

const rows = [];
for (const hz of [10, 100, 1000]) {
  const intervalMs = 1000 / hz;
  const sampler = new NvmlSampler({ device: 0, intervalMs, library });
  let delivered = 0;
  sampler.on('sample', () => ++delivered);  // consume the samples, as a user would
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  sampler.start();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const s = await sampler.stop();
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const processPct = ((cpu.user + cpu.system) / 1000 / wall) * 100;
  const row = {
    hz, intervalMs, samples: s.count, delivered, drops: s.drops, lateTicks: s.lateTicks, durationMs: s.durationMs, samplerCpuMs: s.samplerCpuMs,
    threadCpuPct: s.cpuFraction * 100, cpuUsPerSample: (s.samplerCpuMs * 1000) / Math.max(1, s.count), processCpuPct: processPct,
  };
  rows.push(row);
  console.log(`| ${hz} Hz | ${intervalMs} ms | ${s.count} | ${s.drops} | ${s.lateTicks} | ${row.threadCpuPct.toFixed(3)} | ${row.cpuUsPerSample.toFixed(1)} | ${processPct.toFixed(2)} |`);
}

if (jsonPath) {
  writeFileSync(jsonPath, JSON.stringify({ schema: 'kintsugi-nvml-overhead/1', commit, date: new Date().toISOString(), nvml: which, device: device.name,
    cpu: os.cpus()[0]?.model, logicalCpus: os.cpus().length, node: process.version, secondsPerRate: seconds, rows }, null, 2) + '\n');
  console.log(`\nwrote ${jsonPath}`);
}
