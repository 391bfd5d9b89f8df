// The frontend's handle on one worker: either a child process it starts (and restarts), or a
// remote v2 server it only watches (one of ours started elsewhere, or Triton). The handle owns
// health checking and crash detection, and fails every in-flight call the moment its worker is
// known to be gone, so no query waits on a dead process.
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';

import { createWorkerClient, type InferCall, type WorkerClient } from './client.js';
import { expected, ServingError, type V2ModelMetadata } from './protocol.js';
import type { FaultOptions, ListeningMessage, WorkerProtocol } from './worker.js';

/** A worker process the frontend starts and keeps alive. */
export interface ManagedWorkerSpec {
  /** Model spec for the worker's --model (see loadModelSpec). */
  model: string;
  protocol?: WorkerProtocol;
  faults?: FaultOptions;
  /** Faults for the first process only (a crash that a restart cures). Defaults to `faults`. */
  firstFaults?: FaultOptions;
}

/** A v2 server the frontend does not own: `http://host:port` or `grpc://host:port` and its model name. */
export interface RemoteWorkerSpec {
  url: string;
  model: string;
}

export type WorkerSpec = ManagedWorkerSpec | RemoteWorkerSpec;

export interface HealthOptions {
  /** Time between readiness probes. */
  intervalMs?: number;
  /** A probe slower than this counts as failed. */
  timeoutMs?: number;
  /** Consecutive failed probes before a worker is declared down (and a managed one killed and restarted). */
  failures?: number;
}

export type WorkerState = 'starting' | 'ready' | 'down' | 'stopped';

/** The compiled worker entry; the same path from src/serving (vitest) and dist/serving. */
export const defaultWorkerEntry = fileURLToPath(new URL('../../dist/serving/worker.js', import.meta.url));

function faultArgs(f: FaultOptions | undefined): string[] {
  if (!f) return [];
  const out: string[] = [];
  const add = (flag: string, v: number | undefined) => v !== undefined && out.push(flag, String(v));
  add('--delay-ms', f.delayMs);
  add('--slow-prob', f.slowProbability);
  add('--slow-ms', f.slowMs);
  add('--burn-ms', f.burnMs);
  add('--die-after', f.dieAfter);
  add('--hang-after', f.hangAfter);
  add('--seed', f.seed);
  return out;
}

export interface WorkerHandleOptions {
  health?: HealthOptions;
  /** Path of the worker script for managed workers. */
  entry?: string;
  /** How long a started process may take to report its port. */
  startTimeoutMs?: number;
  label?: string;
}

/**
 * Events: 'ready' (a process or remote server became usable), 'down' (reason), 'restart' (pid).
 */
export class WorkerHandle extends EventEmitter {
  readonly spec: WorkerSpec;
  readonly label: string;
  state: WorkerState = 'starting';
  /** Calls sent and not yet answered (the load balancer reads it). */
  outstanding = 0;
  /** Wall time with at least one call in flight (ms): the worker's busy time, for utilization. */
  busyMs = 0;
  #busySince = 0;
  restarts = 0;
  lastError = '';
  modelName: string;
  metadata: V2ModelMetadata | null = null;
  #client: WorkerClient | null = null;
  #child: ChildProcess | null = null;
  #inflight = new Set<AbortController>();
  #healthTimer: NodeJS.Timeout | null = null;
  #restartTimer: NodeJS.Timeout | null = null;
  #failedProbes = 0;
  #probing = false;
  #backoffMs = 100;
  #health: Required<HealthOptions>;
  #entry: string;
  #startTimeoutMs: number;
  #stopping = false;

  constructor(spec: WorkerSpec, options: WorkerHandleOptions = {}) {
    super();
    if (!spec || typeof spec !== 'object' || typeof spec.model !== 'string') throw new TypeError(expected('worker spec', '{ model, protocol?, faults? } or { url, model }', spec));
    this.spec = spec;
    this.label = options.label ?? ('url' in spec ? spec.url : spec.model);
    this.modelName = 'url' in spec ? spec.model : '';
    this.#health = { intervalMs: options.health?.intervalMs ?? 500, timeoutMs: options.health?.timeoutMs ?? 1000, failures: options.health?.failures ?? 2 };
    this.#entry = options.entry ?? defaultWorkerEntry;
    this.#startTimeoutMs = options.startTimeoutMs ?? 15_000;
  }

  get managed(): boolean {
    return !('url' in this.spec);
  }
  get pid(): number | undefined {
    return this.#child?.pid;
  }
  get url(): string {
    return this.#client?.url ?? ('url' in this.spec ? this.spec.url : '(not started)');
  }

  /** Starts the process (managed) or probes the server (remote), then health checks run until stop(). */
  async start(): Promise<void> {
    if (this.managed) await this.#spawn(true);
    else {
      this.#client = createWorkerClient((this.spec as RemoteWorkerSpec).url);
      await this.#probe();
    }
    this.#healthTimer = setInterval(() => void this.#probe(), this.#health.intervalMs);
    this.#healthTimer.unref();
  }

  async #spawn(first: boolean): Promise<void> {
    const spec = this.spec as ManagedWorkerSpec;
    const faults = first ? spec.firstFaults ?? spec.faults : spec.faults;
    const args = ['--model', spec.model, '--protocol', spec.protocol ?? 'http', '--port', '0', ...faultArgs(faults)];
    // execArgv: [] so a test runner's loader flags are not inherited by the worker.
    const child = fork(this.#entry, args, { execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    this.#child = child;
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const msg = await new Promise<ListeningMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new ServingError(503, `Worker ${this.label} did not report a port within ${this.#startTimeoutMs} ms${stderr ? `: ${stderr.trim()}` : ''}`));
      }, this.#startTimeoutMs);
      child.once('message', (m: ListeningMessage) => {
        clearTimeout(timer);
        resolve(m);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new ServingError(503, `Worker ${this.label} exited before listening (${signal ?? `code ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`));
      });
    });
    if (this.#child !== child) return;
    child.on('exit', (code, signal) => this.#onExit(child, signal ?? `code ${code}`));
    this.#client?.close();
    this.#client = createWorkerClient(`${msg.protocol}://${msg.host}:${msg.port}`);
    this.metadata = msg.metadata;
    this.modelName = msg.metadata.name;
    this.#failedProbes = 0;
    this.#setState('ready');
    if (!first) this.emit('restart', child.pid);
  }

  #onExit(child: ChildProcess, how: string): void {
    if (this.#child !== child) return;
    this.#child = null;
    this.#markDown(`process ${child.pid} exited (${how})`);
    if (!this.#stopping) this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    if (this.#restartTimer || this.#stopping) return;
    const wait = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, 2000);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopping) return;
      this.restarts++;
      this.#spawn(false).catch((err: Error) => {
        this.lastError = err.message;
        this.#scheduleRestart();
      });
    }, wait);
    this.#restartTimer.unref();
  }

  #setState(s: WorkerState): void {
    if (this.state === s || this.state === 'stopped') return;
    this.state = s;
    if (s === 'ready') this.emit('ready');
  }

  #markDown(reason: string): void {
    this.lastError = reason;
    const was = this.state;
    if (this.state !== 'stopped') this.state = 'down';
    // Fail what was sent to the dead worker now rather than at its timeout.
    for (const c of this.#inflight) c.abort(reason);
    this.#inflight.clear();
    if (was !== 'down') this.emit('down', reason);
  }

  async #probe(): Promise<void> {
    if (this.#probing || this.#stopping || !this.#client || (this.managed && !this.#child)) return;
    this.#probing = true;
    try {
      const client = this.#client;
      let ok = await client.ready(this.modelName, this.#health.timeoutMs);
      if (ok && !this.metadata) {
        this.metadata = await client.metadata(this.modelName, this.#health.timeoutMs).catch(() => null);
        ok = this.metadata !== null;
      }
      if (client !== this.#client) return;
      if (ok) {
        this.#failedProbes = 0;
        this.#backoffMs = 100;
        if (this.state !== 'stopped') this.#setState('ready');
        return;
      }
      this.#failedProbes++;
      if (this.#failedProbes >= this.#health.failures && this.state !== 'down') {
        const reason = `${this.#failedProbes} health checks failed (no ready answer within ${this.#health.timeoutMs} ms)`;
        if (this.managed && this.#child) {
          // A process that stops answering is as good as dead: kill it; the exit handler restarts it.
          this.#markDown(reason);
          this.#child.kill('SIGKILL');
        } else this.#markDown(reason);
      } else if (this.state === 'starting') this.#markDown(`not reachable at ${client.url}`);
    } finally {
      this.#probing = false;
    }
  }

  /** One inference on this worker; rejects at once with a 503 when it is not ready. */
  async infer(call: Omit<InferCall, 'model' | 'signal'>): Promise<Float32Array> {
    if (this.state !== 'ready' || !this.#client) {
      throw new ServingError(503, `Worker ${this.label} (${this.url}) is ${this.state}${this.lastError ? `: ${this.lastError}` : ''}`);
    }
    const controller = new AbortController();
    this.#inflight.add(controller);
    if (this.outstanding++ === 0) this.#busySince = performance.now();
    try {
      return await this.#client.infer({ ...call, model: this.modelName, signal: controller.signal });
    } finally {
      if (--this.outstanding === 0) this.busyMs += performance.now() - this.#busySince;
      this.#inflight.delete(controller);
    }
  }

  /** Stops health checks and the process (SIGTERM, then SIGKILL after a grace period). */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#healthTimer) clearInterval(this.#healthTimer);
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#markDown('stopped');
    this.state = 'stopped';
    const child = this.#child;
    this.#child = null;
    this.#client?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((resolve) => {
        const kill = setTimeout(() => child.kill('SIGKILL'), 1000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      });
    }
  }
}
