// Background CPU load for serving benches: busy-looping processes that compete with the frontend
// and the workers for the host's cores, as co-located jobs do. Each one computes for a share
// (`duty`) of every period and sleeps for the rest, with periods of random length so the
// interference comes in bursts rather than as a steady tax. Optionally pinned to one CPU, and
// optionally at a lower priority (a batch job beside the servers).
import { spawn, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';

import { expected } from './protocol.js';

export interface CpuLoadOptions {
  /** Busy processes to start. */
  processes: number;
  /** Share of the time each one computes, in (0, 1]; default 1. */
  duty?: number;
  /** Mean length of one compute-then-sleep cycle; default 100 ms. */
  periodMs?: number;
  /** Pin every process to this CPU (with taskset); default: not pinned. */
  cpu?: number;
  /** Their nice value, 0 (default, the frontend's and the workers' own priority) to 19. */
  nice?: number;
  seed?: number;
}

export interface CpuLoad {
  readonly pids: number[];
  stop(): Promise<void>;
}

// The busy loop. It yields between bursts (and every 50 ms within one) so that it notices its
// parent going away (the IPC channel closes) and never outlives the bench that started it.
const HOG = `
const [duty, period, seed] = process.argv.slice(1).map(Number);
let s = seed >>> 0 || 1;
const rand = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
process.on('disconnect', () => process.exit(0));
let x = 1;
function cycle() {
  const len = period * (0.5 + rand());
  const until = performance.now() + duty * len;
  const chunk = () => {
    const stop = Math.min(until, performance.now() + 50);
    while (performance.now() < stop) for (let i = 0; i < 1000; i++) x = (x * 1.000001 + 1e-9) % 1e6;
    if (performance.now() < until) setImmediate(chunk);
    else setTimeout(cycle, (1 - duty) * len);
  };
  chunk();
}
cycle();
`;

export async function startCpuLoad(options: CpuLoadOptions): Promise<CpuLoad> {
  const n = options.processes;
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new RangeError(expected('options.processes', 'an integer in [0, 64]', n));
  const duty = options.duty ?? 1;
  if (typeof duty !== 'number' || !(duty > 0 && duty <= 1)) throw new RangeError(expected('options.duty', 'a number in (0, 1]', duty));
  const period = options.periodMs ?? 100;
  if (typeof period !== 'number' || !(period > 0)) throw new RangeError(expected('options.periodMs', 'a positive number of milliseconds', period));
  const cpu = options.cpu;
  if (cpu !== undefined && (!Number.isInteger(cpu) || cpu < 0)) throw new RangeError(expected('options.cpu', 'a CPU number (a non-negative integer)', cpu));
  const nice = options.nice ?? 0;
  if (!Number.isInteger(nice) || nice < 0 || nice > 19) throw new RangeError(expected('options.nice', 'an integer in [0, 19]', nice));
  const children: ChildProcess[] = [];
  for (let j = 0; j < n; j++) {
    const args = ['-e', HOG, String(duty), String(period), String((options.seed ?? 1) * 7919 + j)];
    const [cmd, argv] = cpu === undefined ? [process.execPath, args] : ['taskset', ['-c', String(cpu), process.execPath, ...args]];
    // Its own session (detached), hence its own scheduling group where the kernel groups by session
    // (autogroup): like another tenant's job it competes with the servers for the CPUs, rather than
    // using up the share of the bench's own group and stalling the frontend wholesale.
    const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], detached: true });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err) => reject(new Error(`Could not start a background load process (${cmd}): ${err.message}`)));
    });
    children.push(child);
    if (nice > 0) setPriority(child.pid!, nice);
  }
  return {
    pids: children.map((c) => c.pid!),
    async stop() {
      await Promise.all(children.map((c) => new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve();
        c.once('exit', () => resolve());
        c.kill('SIGKILL');
      })));
    },
  };
}
