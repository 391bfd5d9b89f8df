// The trainer's view of the embedding servers: it starts (or connects to) the shard processes,
// routes row pulls and gradient pushes, runs the per-step two-phase commit, detects failed servers
// and replaces them — by rebuilding from parity while training goes on (protected clusters), or by
// a fresh process the caller restores from a checkpoint (unprotected ones).
import { gatherRowsSync, scatterRowsSync } from '@kintsugi/cuda-core';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bits, createCodec, f32words, type CodeMode } from './codec.js';
import { processDying } from './liveness.js';
import { stateWidth, type EmbeddingOptimizer } from './optim.js';
import { Connection, describeAddress, Op, Writer, type Reader } from './protocol.js';
import { READ_CODED, READ_FULL, type Address, type ShardConfig, type StandbyOrder } from './shard.js';
import { integer, oneOf, rangeError, RemoteError, ShardUnavailableError } from './validate.js';

/** Compiled entry of a shard process (the cluster runs from src/ under tests and from dist/). */
export const SHARD_MAIN = fileURLToPath(new URL('../dist/shard-main.js', import.meta.url));

export type Protection = 'none' | CodeMode;

export interface ClusterOptions {
  /** Total embedding rows over all tables (tables × rowsPerTable). */
  totalRows: number;
  rowsPerTable: number;
  dim: number;
  /** Data shards. */
  k: number;
  protection?: Protection;
  /** Parity shards (1 for xor and sum; up to 4 for rs). */
  r?: number;
  state?: 'encoded' | 'replicated';
  optimizer?: EmbeddingOptimizer;
  lr?: number;
  eps?: number;
  seed?: number;
  /** Spare processes started up front (more are started when needed). */
  spares?: number;
  /** Deadline of every request, ms. */
  timeoutMs?: number;
  rebuild?: { rangeSlots?: number; pauseMs?: number };
  /** Failure injection: data shard `shard` dies while handling the push of `step`. */
  crash?: { shard: number; step: number; when: 'prepare' | 'after-first-delta' };
  /** Servers already running (e.g. on other hosts, `kintsugi ecrm serve`): data, parity, spares. */
  addresses?: Address[];
  /** How processes this cluster starts on its own host talk: 'unix' sockets (default) or 'tcp'. */
  transport?: 'unix' | 'tcp';
  /** Late pulls of a protected cluster are also asked of a standby spare (default true; see HEDGE_FACTOR). */
  hedgePulls?: boolean;
}

export type Health = 'healthy' | 'rebuilding';

/** How long a rebuild waits after a served pull for the step's push (a pull-only reader never pushes). */
const READER_REBUILD_DELAY_MS = 50;
/**
 * A data shard's pull still unanswered after HEDGE_FACTOR × the median of recent pulls (within
 * [HEDGE_MIN_MS, HEDGE_MAX_MS]) is late: a shard process of this host is then checked for dying
 * (/proc, see liveness.ts), and a dying one's rows are asked of a standby spare at once, which
 * decodes them from the other servers instead of waiting for the dead connection to close (a
 * killed process closes its sockets only after its memory is torn down, 10-35 ms for a 100 MB
 * process here). A shard still late at the HEDGE_QUANTILE of recent pulls is hedged too, dying
 * or not (a slow or stopped one): on a noisy 2-core VM 3× the median alone hedged up to a third
 * of the steps, each costing the spare and four sources a read of ~1,600 rows, and the spare
 * answered first in ~1 of 20. The check itself is a read of /proc (tens of µs), so it comes
 * early: at 1.5× the median rather than 3×, the pull of the step a failure hits took 2-9 ms
 * beyond its median (median 4.7) instead of 5-14 ms (9.3), over 12 interleaved pairs of failure
 * runs at step 370 of the report's job.
 */
const HEDGE_FACTOR = 1.5;
const HEDGE_QUANTILE = 0.95;
const HEDGE_MIN_MS = 1;
const HEDGE_MAX_MS = 50;
const HEDGE_HISTORY = 64;

/** A window of recent request latencies (ms) and the delays after which a request counts as late. */
class Latencies {
  readonly #ms: number[] = [];
  add(ms: number): void {
    this.#ms.push(ms);
    if (this.#ms.length > HEDGE_HISTORY) this.#ms.shift();
  }
  /**
   * check: HEDGE_FACTOR × the recent median, within [HEDGE_MIN_MS, HEDGE_MAX_MS]; hedge: the later
   * of that and the recent HEDGE_QUANTILE, within HEDGE_MAX_MS. Both the maximum until 8 are known.
   */
  lateAfter(): { check: number; hedge: number } {
    const recent = this.#ms.slice().sort((a, b) => a - b);
    if (recent.length < 8) return { check: HEDGE_MAX_MS, hedge: HEDGE_MAX_MS };
    const check = Math.min(HEDGE_MAX_MS, Math.max(HEDGE_MIN_MS, HEDGE_FACTOR * recent[recent.length >> 1]));
    const quantile = recent[Math.min(recent.length - 1, Math.floor(HEDGE_QUANTILE * recent.length))];
    return { check, hedge: Math.min(HEDGE_MAX_MS, Math.max(check, quantile)) };
  }
}

export interface ClusterEvent {
  /** performance.now() in the trainer. */
  at: number;
  /** serving: a replacement answers requests for the lost rows (decoding those not yet rebuilt). */
  kind: 'failure' | 'serving' | 'rebuild-start' | 'rebuild-done' | 'replaced';
  server: number;
  detail?: unknown;
}

/** Servers that failed in an unprotected cluster: the caller decides how to restore them. */
export class ShardLostError extends Error {
  readonly code = 'ECRM_SHARD_LOST';
  constructor(readonly servers: number[], override readonly cause: Error) {
    super(`Expected every embedding server to answer but received no answer from ${servers.map((s) => `server ${s}`).join(', ')}: ${cause.message}`);
    this.name = 'ShardLostError';
  }
}

interface Server {
  addr: Address;
  proc: ChildProcess | null;
  conn: Connection;
  pid: number;
}

async function startProcess(timeoutMs: number, socketDir: string | null): Promise<{ proc: ChildProcess; address: Address }> {
  const env: NodeJS.ProcessEnv = { ...process.env, ECRM_EXIT_WITH_PARENT: '1' };
  if (socketDir) env.ECRM_SOCKET_DIR = socketDir;
  else delete env.ECRM_SOCKET_DIR;
  const proc = spawn(process.execPath, [SHARD_MAIN], { stdio: ['pipe', 'pipe', 'inherit'], env });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new ShardUnavailableError('new shard process', `Expected a shard process to listen within ${timeoutMs} ms but received no port (is dist/ built? run tsc)`));
    }, timeoutMs);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new ShardUnavailableError('new shard process', `Expected a listening shard process but received an exit (${signal ?? code}) before it listened`));
    });
    proc.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /ECRM_LISTENING (\d+)(?: (\S+))?\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.removeAllListeners('exit');
        resolve({ proc, address: { host: '127.0.0.1', port: Number(m[1]), ...(m[2] ? { path: m[2] } : {}) } });
      }
    });
  });
}

export class EmbeddingCluster {
  readonly k: number;
  readonly r: number;
  readonly dim: number;
  readonly width: number;
  readonly slots: number;
  readonly protection: Protection;
  readonly events: ClusterEvent[] = [];
  readonly #o: Required<Omit<ClusterOptions, 'crash' | 'addresses' | 'rebuild' | 'transport'>> & Pick<ClusterOptions, 'crash'> & { rebuild: { rangeSlots: number; pauseMs: number } };
  readonly #servers: Server[] = [];
  readonly #health: Health[] = [];
  readonly #spares: Server[] = [];
  readonly #rebuilds = new Map<number, Promise<void>>();
  #rebuildError: Error | null = null;
  /** A recovery started between requests (#recoverNow), awaited by the next attempt. */
  #recovering: Promise<void> | null = null;
  #onServed: (() => void)[] = [];
  /** Commits sent (one-way), whose writes are still to be collected (with the next push). */
  #commits: { server: number; done: Promise<unknown> }[] = [];
  /** Per server: the last commit, not sent yet. A data shard's goes out in one write with its next
   * request (the next pull), which it handles after it: one message and wake-up fewer; a parity
   * server's once that pull's replies are in (see push). */
  #unsentCommit: (Buffer | null)[] = [];
  #txn = 0;
  #committed = -1;
  /** Recent latencies of a data shard's pull, and of a push's prepares: what counts as late. */
  readonly #pulls = new Latencies();
  readonly #prepares = new Latencies();
  /** The rows of the coming step, as last hinted (see prefetch). */
  #hint: Int32Array | null = null;
  #hedgesSent = 0;
  #hedgedPulls = 0;
  #closed = false;
  /** Where the processes this cluster starts put their Unix sockets (null: TCP only). */
  readonly #socketDir: string | null;

  private constructor(options: ClusterOptions) {
    const protection = oneOf(options.protection ?? 'none', 'options.protection', ['none', 'xor', 'rs', 'sum'] as const);
    const k = integer(options.k, 'options.k', 1, 64);
    const r = protection === 'none' ? 0 : integer(options.r ?? 1, 'options.r', 1, 4);
    if (protection !== 'none') createCodec(protection, k, r); // validates r for the mode
    this.#o = {
      totalRows: integer(options.totalRows, 'options.totalRows', 1, 2 ** 31 - 1),
      rowsPerTable: integer(options.rowsPerTable, 'options.rowsPerTable', 1, 2 ** 31 - 1),
      dim: integer(options.dim, 'options.dim', 1, 4096),
      k, r, protection,
      state: oneOf(options.state ?? 'encoded', 'options.state', ['encoded', 'replicated'] as const),
      optimizer: options.optimizer ?? 'rowwise-adagrad',
      lr: options.lr ?? 0.05,
      eps: options.eps ?? 1e-8,
      seed: options.seed ?? 1,
      spares: integer(options.spares ?? (protection === 'none' ? 0 : 1), 'options.spares', 0, 16),
      timeoutMs: integer(options.timeoutMs ?? 5000, 'options.timeoutMs', 10, 600_000),
      rebuild: { rangeSlots: options.rebuild?.rangeSlots ?? 16384, pauseMs: options.rebuild?.pauseMs ?? 0 },
      crash: options.crash,
      hedgePulls: options.hedgePulls ?? true,
    };
    this.k = k;
    this.r = r;
    this.protection = protection;
    this.dim = this.#o.dim;
    this.width = this.dim + stateWidth(this.#o.optimizer, this.dim);
    this.slots = Math.ceil(this.#o.totalRows / k);
    const transport = oneOf(options.transport ?? 'unix', 'options.transport', ['unix', 'tcp'] as const);
    this.#socketDir = transport === 'unix' ? mkdtempSync(join(tmpdir(), 'ecrm-')) : null;
  }

  static async start(options: ClusterOptions): Promise<EmbeddingCluster> {
    const c = new EmbeddingCluster(options);
    const n = c.k + c.r + c.#o.spares;
    const addresses = options.addresses;
    try {
      if (addresses && addresses.length < n) throw rangeError('options.addresses', `${n} servers (k + r + spares)`, addresses.length, true);
      const servers = await Promise.all(Array.from({ length: n }, (_, i) => c.#open(addresses?.[i], i < c.k ? `data ${i}` : i < c.k + c.r ? `parity ${i - c.k}` : 'spare')));
      c.#servers.push(...servers.slice(0, c.k + c.r));
      c.#spares.push(...servers.slice(c.k + c.r));
      c.#health.push(...c.#servers.map(() => 'healthy' as const));
      await Promise.all(c.#servers.map((_, i) => c.#configure(i)));
      await c.#standby();
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  async #open(addr: Address | undefined, label: string): Promise<Server> {
    let proc: ChildProcess | null = null;
    if (!addr) {
      const started = await startProcess(Math.max(this.#o.timeoutMs, 15_000), this.#socketDir);
      proc = started.proc;
      addr = started.address;
    }
    const conn = await Connection.connect(addr, `${label} (${describeAddress(addr)})`, this.#o.timeoutMs);
    const pid = (await conn.request(Op.status)).json<{ pid: number }>().pid;
    return { addr, proc, conn, pid };
  }

  /** A spare, or a new process when none is left; its connection is relabelled for its new role. */
  async #takeSpare(label: string): Promise<Server> {
    const s = this.#spares.shift() ?? (await this.#open(undefined, 'spare'));
    if (s.conn.closed) s.conn = await Connection.connect(s.addr, label, this.#o.timeoutMs);
    s.conn.label = `${label} (${describeAddress(s.addr)}, replacement)`;
    return s;
  }

  /**
   * Spares connect to every server ahead of a failure (a hot standby): a rebuild then starts
   * reading at once instead of first opening connections to its sources.
   */
  async #standby(): Promise<void> {
    if (this.protection === 'none') return;
    // A replacement's store: a data shard's rows with their state, or (as large) an encoded parity.
    const storeFloats = this.slots * this.width;
    const order: StandbyOrder = {
      servers: this.#servers.map((s) => s.addr), timeoutMs: this.#o.timeoutMs, storeFloats,
      code: { mode: this.protection, k: this.k, r: this.r, state: this.#o.state, dim: this.dim, optimizer: this.#o.optimizer },
    };
    const servers = new Writer().json(order).build();
    await Promise.all(this.#spares.map((s) => s.conn.request(Op.standby, servers)));
  }

  #label(i: number): string {
    return i < this.k ? `data ${i}` : `parity ${i - this.k}`;
  }

  #config(i: number, extra: Partial<ShardConfig> = {}): ShardConfig {
    const o = this.#o;
    return {
      role: i < this.k ? 'data' : 'parity', index: i < this.k ? i : i - this.k, k: this.k, r: this.r, mode: o.protection,
      state: o.state, dim: o.dim, optimizer: o.optimizer, lr: o.lr, eps: o.eps, totalRows: o.totalRows, rowsPerTable: o.rowsPerTable,
      seed: o.seed, committedStep: -1, parities: this.#servers.slice(this.k).map((s) => s.addr), timeoutMs: o.timeoutMs,
      crash: o.crash && o.crash.shard === i ? { step: o.crash.step, when: o.crash.when } : undefined,
      ...extra,
    };
  }

  async #configure(i: number, extra: Partial<ShardConfig> = {}): Promise<void> {
    await this.#servers[i].conn.request(Op.configure, new Writer().json(this.#config(i, extra)).build());
  }

  get health(): readonly Health[] {
    return this.#health;
  }
  /** Pulls also asked of a standby spare for being late (see HEDGE_FACTOR). */
  get hedgesSent(): number {
    return this.#hedgesSent;
  }
  /** Hedged pulls the spare answered first. */
  get hedgedPulls(): number {
    return this.#hedgedPulls;
  }
  get committedStep(): number {
    return this.#committed;
  }
  get pids(): number[] {
    return this.#servers.map((s) => s.pid);
  }
  /** Whether a lost server is being rebuilt (its rows partly decoded on demand). */
  get rebuilding(): boolean {
    return this.#rebuilds.size > 0;
  }
  /** Resolves when every rebuild under way has finished (and rejects if one failed). */
  async rebuilt(): Promise<void> {
    this.#flushCommits();
    for (const start of this.#onServed.splice(0)) start();
    while (this.#rebuilds.size) await Promise.all(this.#rebuilds.values());
    if (this.#rebuildError) throw this.#rebuildError;
  }

  /** Groups global rows by data shard: per shard, the slots and the positions in the request. */
  #route(rows: Int32Array): { slots: Int32Array; at: Int32Array }[] {
    const counts = new Int32Array(this.k);
    for (let i = 0; i < rows.length; i++) {
      const g = rows[i];
      if (g < 0 || g >= this.#o.totalRows) throw rangeError('rows', `global rows in [0, ${this.#o.totalRows - 1}]`, g);
      counts[g % this.k]++;
    }
    const out = Array.from(counts, (n) => ({ slots: new Int32Array(n), at: new Int32Array(n) }));
    const fill = new Int32Array(this.k);
    for (let i = 0; i < rows.length; i++) {
      const g = rows[i], s = g % this.k, n = fill[s]++;
      out[s].slots[n] = (g - s) / this.k;
      out[s].at[n] = i;
    }
    return out;
  }

  #sendCommit(s: number): void {
    const commit = this.#unsentCommit[s];
    if (!commit) return;
    this.#unsentCommit[s] = null;
    // One-way: a server handles a connection's frames in order, so the commit is applied before
    // anything sent after it, and a commit it could not apply fails its next request (no ack to
    // write and read each step: 14.3 and 13.9 % overhead against 15.5 and 16.1 %, 2 interleaved
    // pairs). `done` settles once the frame is handed to the kernel, or fails with the connection.
    const done = this.#servers[s].conn.send(Op.commit, commit);
    done.catch(() => undefined);
    this.#commits.push({ server: s, done });
  }

  #flushCommits(): void {
    for (let s = 0; s < this.#servers.length; s++) this.#sendCommit(s);
  }

  #flushParityCommits(): void {
    for (let s = this.k; s < this.#servers.length; s++) this.#sendCommit(s);
  }

  /** A request to data shard s, written together with its pending commit (one syscall). */
  #withCommit(s: number, op: number, payload: Buffer | null): Promise<Reader> | null {
    const conn = this.#servers[s].conn;
    conn.cork();
    try {
      this.#sendCommit(s);
      return payload ? conn.request(op, payload) : null;
    } finally {
      conn.uncork();
    }
  }

  /** The current weights of the rows ([rows × dim]); transparently survives server failures. */
  async pull(step: number, rows: Int32Array): Promise<Float32Array> {
    // The hinted rows are asked for now: a replacement that takes over during this pull gets them
    // through the pull (its hedge, or the pull retried), and is not sent them again as a hint,
    // which could start a second decode of the rows a hedge is still decoding.
    if (rows === this.#hint) this.#hint = null;
    const routes = this.#route(rows);
    const out = new Float32Array(rows.length * this.dim);
    // Shards that answered keep their rows when the pull is retried after a failure (nothing is
    // committed in between): only the lost shards' rows are asked for again.
    const answered = new Array<boolean>(this.k).fill(false);
    return this.#retrying('pull', async () => {
      // The last commit is not awaited here: a shard handles requests in order, so the commit is
      // applied before this pull, and the parity's commit overlaps the trainer's compute.
      const late = this.#pulls.lateAfter();
      const replies = await Promise.allSettled(routes.map((r, s) => {
        if (answered[s]) return null;
        const request = this.#withCommit(s, Op.pull, r.slots.length ? new Writer().u32(step + 1).array(r.slots).build() : null);
        return request && this.#hedged(s, r.slots, request, late);
      }));
      this.#flushParityCommits();
      replies.forEach((reply, s) => {
        if (reply.status === 'rejected') return;
        answered[s] = true;
        if (!reply.value) return;
        // One native scatter per shard (a row at a time in JS was ~0.4 ms of a step's CPU).
        scatterRowsSync(bits(out), this.dim, routes[s].at, bits(reply.value.f32sView()));
      });
      const failed = replies.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      return out;
    });
  }

  /**
   * A pull of data shard s, also asked of a standby spare if the shard is late: at once when its
   * process is found dying at `late.check`, or when it is still late at `late.hedge` (see
   * HEDGE_FACTOR).
   */
  #hedged(s: number, slots: Int32Array, primary: Promise<Reader>, late: { check: number; hedge: number }): Promise<Reader> {
    const spare = this.#spares[0];
    if (!this.#o.hedgePulls || this.protection === 'none' || !spare || spare.conn.closed || this.#health[s] !== 'healthy') return primary;
    const started = performance.now(), need = this.#committed;
    return new Promise((resolve, reject) => {
      let outstanding = 1, settled = false, timer: NodeJS.Timeout | undefined;
      const win = (reply: Reader) => {
        if (!settled) resolve(reply);
        settled = true;
      };
      // Only when both have failed does the pull fail (and the failure get handled).
      const lose = (e: unknown) => {
        if (--outstanding === 0 && !settled) reject(e);
      };
      const hedge = () => {
        this.#flushParityCommits();  // the spare reads the parity at the committed step
        outstanding++;
        this.#hedgesSent++;
        spare.conn.request(Op.hedgedPull, new Writer().u32(need + 1).u32(s).array(slots).build()).then((reply) => {
          if (!settled) this.#hedgedPulls++;
          win(reply);
        }, lose);
      };
      timer = setTimeout(() => {
        if (this.#closeIfDying(s)) {
          hedge();
          this.#recoverNow();
        } else {
          timer = setTimeout(() => {
            hedge();
            if (this.#closeIfDying(s)) this.#recoverNow();
          }, Math.max(0, late.hedge - late.check));
        }
      }, late.check);
      primary.then((reply) => {
        clearTimeout(timer);
        this.#pulls.add(performance.now() - started);
        win(reply);
      }, (e) => {
        clearTimeout(timer);
        lose(e);
      });
    });
  }

  /**
   * Hints the rows of a coming step (the trainer's next batch): a replacement still rebuilding
   * decodes those it lacks while the trainer computes, instead of inside that step's pull. Only
   * rebuilding servers are sent anything; errors are left to the requests that need the rows.
   * The last hint is kept: a replacement that takes over later in the step is sent it at once.
   */
  prefetch(rows: Int32Array): void {
    this.#hint = rows;
    if (!this.rebuilding) return;
    const routes = this.#route(rows);
    for (const [i, health] of this.#health.entries()) {
      if (i >= this.k || health !== 'rebuilding' || routes[i].slots.length === 0) continue;
      this.#servers[i].conn.request(Op.prefetch, new Writer().array(routes[i].slots).build()).catch(() => undefined);
    }
  }

  /**
   * Applies the rows' gradients ([rows × dim], one entry per distinct row). Protected: prepare on
   * every touched shard (which stages the rows and their parity deltas), then commit everywhere;
   * a failure before the commit aborts the attempt and the push is redone after recovery.
   */
  async push(step: number, rows: Int32Array, grads: Float32Array): Promise<void> {
    if (grads.length !== rows.length * this.dim) throw rangeError('grads', `${rows.length * this.dim} floats (rows × dim)`, grads.length, true);
    const routes = this.#route(rows);
    const gradsOf = (s: number) => f32words(gatherRowsSync(bits(grads), this.dim, routes[s].at));
    const payloads = routes.map((r, s) => (r.slots.length ? { slots: r.slots, grads: gradsOf(s) } : null));
    // No await before the requests are written: the caller overlaps its own work with the push.
    await this.#retrying('push', async () => {
      // A server whose connection has closed (one a pull was hedged around, say) is replaced
      // first, rather than found by a prepare that would then be aborted everywhere.
      const lost = this.#servers.findIndex((s) => s.conn.closed);
      if (lost >= 0 && this.protection !== 'none') throw new ShardUnavailableError(this.#label(lost), `Expected ${this.#label(lost)} to be connected but its connection has closed`);
      if (this.protection === 'none') {
        await Promise.all(payloads.map((p, s) => p && this.#servers[s].conn.request(Op.push, new Writer().u32(step + 1).array(p.slots).array(p.grads).build())));
        this.#committed = step;
        return;
      }
      this.#flushParityCommits();
      const txn = ++this.#txn;
      // A data shard stages its rows and sends its parity deltas straight to the parity servers;
      // each parity server answers the trainer's stage request once it holds them all.
      const from = Int32Array.from(payloads.flatMap((p, s) => (p ? [s] : [])));
      const prepares = [
        ...payloads.map((p, s) => this.#withCommit(s, Op.prepare, p && new Writer().u32(step + 1).u32(txn).array(p.slots).array(p.grads).build())),
        ...this.#servers.slice(this.k).map((_, j) => this.#withCommit(this.k + j, Op.stage, from.length ? new Writer().u32(step + 1).u32(txn).array(from).build() : null)),
      ];
      const commits = this.#commits.splice(0).map((c) => c.done);
      // Nothing is applied until the commit: dropping the staged rows and deltas leaves every
      // parity in step with its data, and the push is redone whole after recovery. The abort goes
      // out at the first failure: parity servers waiting for a dead shard's delta stop waiting.
      let aborted: Promise<unknown> | null = null;
      const abort = () => (aborted ??= Promise.allSettled(this.#servers.map((s) => s.conn.request(Op.abort, new Writer().u32(step + 1).build()))));
      // Servers still preparing as late as a pull is hedged (against recent prepares) are checked
      // for a dying process.
      const started = performance.now();
      const late = new Set(prepares.flatMap((p, s) => (p ? [s] : [])));
      prepares.forEach((p, s) => p?.then(() => late.delete(s), () => (late.delete(s), abort())));
      const watch = setTimeout(() => late.forEach((s) => this.#closeIfDying(s)), this.#prepares.lateAfter().check);
      // The previous commits' writes settle alongside: a connection that failed since shows up here.
      const [committed, prepared] = await Promise.all([Promise.allSettled(commits), Promise.allSettled(prepares)]);
      clearTimeout(watch);
      const took = performance.now() - started;
      const failed = [...committed, ...prepared].find((p): p is PromiseRejectedResult => p.status === 'rejected');
      if (failed) {
        await abort();
        // The cause, rather than a parity's report of the abort it led to.
        const cause = prepared.slice(0, this.k).find((p): p is PromiseRejectedResult => p.status === 'rejected') ?? failed;
        throw cause.reason;
      }
      this.#prepares.add(took);
      // Every server commits every step, so all hold the same committed step (what rebuild reads
      // check). The commit is one-way and costs no round trip. Data
      // shards get theirs with their next request (the pull, which must see it anyway); parity
      // servers once that pull's replies are in, so their deltas are applied while the trainer
      // computes rather than beside the pulls on shared cores.
      const commit = new Writer().u32(step + 1).u32(txn).build();
      this.#unsentCommit = Array.from({ length: this.#servers.length }, () => commit);
      // While a rebuild reads sources at one committed step, every server gets the commit now.
      if (this.#rebuilds.size > 0) this.#flushCommits();
      this.#committed = step;
    });
  }

  /**
   * Background rebuilds wait for the step that found the failure: they start once a push has been
   * served (the step is done), or shortly after a pull when no push follows (a reader only).
   */
  #served(kind: 'pull' | 'push'): void {
    if (this.#onServed.length === 0) return;
    if (kind === 'push') {
      for (const start of this.#onServed.splice(0)) start();
      return;
    }
    const waiting = this.#onServed.slice();
    setTimeout(() => waiting.forEach((start) => start()), READER_REBUILD_DELAY_MS).unref();
  }

  async #retrying<T>(kind: 'pull' | 'push', fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (this.#recovering) await this.#recovering;
      if (this.#rebuildError) throw this.#rebuildError;
      try {
        const out = await fn();
        this.#served(kind);
        return out;
      } catch (e) {
        if (!(e instanceof ShardUnavailableError || e instanceof RemoteError) || this.#closed) throw e;
        if (this.#recovering) continue;  // the failure is being handled already
        const failed = await this.detectFailures();
        if (failed.length === 0) {
          if (attempt >= 2) throw e;
          continue;
        }
        if (this.protection === 'none') throw new ShardLostError(failed, e);
        if (attempt >= 4) throw e;
        await this.#recover(failed);
      }
    }
  }

  /**
   * Recovery started as soon as a pull finds its shard dead (hedged around it, so the pull is
   * still served): the spare takes the role while the trainer computes, and the step's push finds
   * it in place. Requests wait for it before their next attempt.
   */
  #recoverNow(): void {
    if (this.#recovering || this.protection === 'none' || this.#closed) return;
    this.#recovering = (async () => {
      // A dying process is certain: the other local servers are judged by /proc alone, without
      // the status round trip (woken on shared cores while a process is being torn down, they
      // took 2-7 ms to answer, all of it before the spare could be configured).
      const failed = await this.detectFailures({ probeLocal: false });
      if (failed.length > 0) await this.#recover(failed);
    })().catch((e: Error) => {
      this.#rebuildError ??= e;
    }).finally(() => {
      this.#recovering = null;
    });
  }

  /**
   * Closes the connection to server i if it is a process of this host that is dying or gone (see
   * liveness.ts): its requests then fail at once instead of when the kernel, having torn down the
   * process's memory, closes its sockets. True when it did.
   */
  #closeIfDying(i: number): boolean {
    const s = this.#servers[i];
    if (!s.proc || s.conn.closed || !processDying(s.pid)) return false;
    s.conn.close();
    return true;
  }

  /**
   * Servers that do not answer a status request within a short deadline, or local ones whose
   * process is dying. They are fenced (killed when local) so a slow-but-alive server can never come
   * back with stale state. `probeLocal: false` asks only remote servers: a local one counts as
   * failed only when /proc shows it dying or its connection has closed.
   */
  async detectFailures(options: { probeLocal?: boolean } = {}): Promise<number[]> {
    this.#flushCommits();
    const deadline = Math.min(this.#o.timeoutMs, 2000);
    const probe = (s: Server) => s.conn.request(Op.status, undefined, deadline).then(() => true, () => false);
    const alive = await Promise.all(this.#servers.map((s, i) => {
      if (this.#closeIfDying(i) || s.conn.closed) return false;
      return s.proc && options.probeLocal === false ? true : probe(s);
    }));
    const failed = alive.flatMap((ok, i) => (ok ? [] : [i]));
    for (const i of failed) {
      this.events.push({ at: performance.now(), kind: 'failure', server: i, detail: { pid: this.#servers[i].pid } });
      this.#servers[i].proc?.kill('SIGKILL');
      this.#servers[i].conn.close();
    }
    return failed;
  }

  /** Rebuilds lost servers on spares from the survivors and parity; training continues meanwhile. */
  async #recover(failed: number[]): Promise<void> {
    const healthy = this.#servers.map((_, i) => i).filter((i) => !failed.includes(i) && this.#health[i] === 'healthy');
    // A replacement starts at the committed step: commits to the lost servers are moot.
    this.#commits = this.#commits.filter((c) => !failed.includes(c.server));
    for (const i of failed) this.#unsentCommit[i] = null;
    for (const i of failed) {
      this.#servers[i] = await this.#takeSpare(this.#label(i));
      this.#health[i] = 'rebuilding';
    }
    const plan = (i: number) => {
      // A data rebuild decodes from k − 1 data + 1 parity (data first: fewer parity reads); a
      // parity is encoded from all k data shards, started once any data rebuilds have finished.
      const pool = i < this.k ? healthy : Array.from({ length: this.k }, (_, j) => j);
      if (pool.length < this.k) {
        throw rangeError(`the rebuild of ${this.#label(i)}`, `${this.k} healthy servers to decode from`, `${pool.length} (${this.#o.protection}, k = ${this.k}, r = ${this.r})`, true);
      }
      return { sources: pool.slice(0, this.k).map((j) => ({ block: j, ...this.#servers[j].addr })), ...this.#o.rebuild };
    };
    const plans = new Map(failed.map((i) => [i, plan(i)]));
    await Promise.all(failed.map((i) => this.#configure(i, { committedStep: this.#committed, rebuild: plans.get(i)!, crash: undefined })));
    for (const i of failed) this.events.push({ at: performance.now(), kind: 'serving', server: i });
    if (this.#hint) this.prefetch(this.#hint);
    if (failed.some((i) => i >= this.k)) {
      const peers = new Writer().json(this.#servers.slice(this.k).map((s) => s.addr)).build();
      await Promise.all(this.#servers.slice(0, this.k).map((s) => s.conn.request(Op.peers, peers)));
    }
    // The background rebuild starts once the step that found the failure has been served (by
    // degraded reads): its first ranges would otherwise compete with that step's reads and compute.
    const served = new Promise<void>((resolve) => this.#onServed.push(resolve));
    const dataRebuilds = failed.filter((i) => i < this.k).map((i) => this.#startRebuild(i, served));
    // A parity is encoded from all k data shards: it waits for data shards rebuilt alongside it.
    const before = Promise.all([...dataRebuilds, ...[...this.#rebuilds.entries()].filter(([j]) => j < this.k).map(([, p]) => p)]);
    failed.filter((i) => i >= this.k).forEach((i) => this.#startRebuild(i, before.then(() => undefined)));
  }

  #startRebuild(i: number, after: Promise<void>): Promise<void> {
    const server = this.#servers[i];
    const run = after.then(() => {
      this.events.push({ at: performance.now(), kind: 'rebuild-start', server: i });
      return server.conn.request(Op.rebuild, undefined, 30 * 60_000);
    }).then(
      (reply) => {
        this.#health[i] = 'healthy';
        this.events.push({ at: performance.now(), kind: 'rebuild-done', server: i, detail: reply.json() });
      },
      (e: Error) => {
        this.#rebuildError ??= new RemoteError(this.#label(i), `rebuild failed: ${e.message}`);
      },
    ).finally(() => this.#rebuilds.delete(i));
    this.#rebuilds.set(i, run);
    return run;
  }

  /**
   * Replaces failed servers of an unprotected cluster by fresh ones: with initial weights, or
   * with `restore`, waiting for the caller to restore their checkpoint (CPR; they skip computing
   * the initial weights the restore overwrites).
   */
  async replace(failed: number[], options: { restore?: boolean } = {}): Promise<void> {
    for (const i of failed) {
      this.#servers[i] = await this.#takeSpare(this.#label(i));
      await this.#configure(i, { crash: undefined, restoring: options.restore === true && i < this.k });
      this.events.push({ at: performance.now(), kind: 'replaced', server: i });
    }
  }

  /**
   * Restart of a checkpointing job: every data shard process is stopped and relaunched; the caller
   * then loads the checkpoint into all of them (the fresh processes wait for it instead of first
   * computing initial weights it would overwrite: ~65-100 ms of CPU each here).
   */
  async restartData(): Promise<void> {
    const old = this.#servers.slice(0, this.k);
    await Promise.allSettled(old.map((s) => s.conn.request(Op.shutdown, undefined, 1000)));
    for (const s of old) {
      s.conn.close();
      s.proc?.kill('SIGKILL');
    }
    const fresh = await Promise.all(old.map((s, i) => (s.proc ? this.#open(undefined, this.#label(i)) : this.#takeSpare(this.#label(i)))));
    fresh.forEach((s, i) => (this.#servers[i] = s));
    await Promise.all(fresh.map((_, i) => this.#configure(i, { crash: undefined, restoring: true })));
    this.events.push({ at: performance.now(), kind: 'replaced', server: -1, detail: 'all data shards restarted' });
  }

  /** Injected failure: the server's process dies at once (SIGKILL, or a crash request if remote). */
  kill(server: number): void {
    integer(server, 'server', 0, this.#servers.length - 1);
    const s = this.#servers[server];
    if (s.proc) s.proc.kill('SIGKILL');
    else s.conn.request(Op.crash).catch(() => undefined);
  }

  /** Every data shard writes its rows and optimizer state to `dir/shard-<i>.bin`. */
  async checkpoint(dir: string): Promise<void> {
    this.#flushCommits();
    await Promise.all(this.#commits.splice(0).map((c) => c.done));
    await Promise.all(this.#servers.slice(0, this.k).map((s, i) => s.conn.request(Op.checkpoint, new Writer().json({ path: join(dir, `shard-${i}.bin`) }).build(), 120_000)));
  }

  /** Data shards `shards` (all by default) load their last checkpoint from `dir`. */
  async restore(dir: string, shards: number[] = Array.from({ length: this.k }, (_, i) => i)): Promise<void> {
    await Promise.all(shards.map((i) => this.#servers[i].conn.request(Op.restore, new Writer().json({ path: join(dir, `shard-${i}.bin`) }).build(), 120_000)));
  }

  async #readShard(i: number, part: number, slots = Int32Array.from({ length: this.slots }, (_, s) => s)): Promise<Float32Array> {
    const reply = await this.#servers[i].conn.request(Op.read, new Writer().u32(part).u32(0).array(slots).build(), 60_000);
    reply.u32();
    return reply.f32s();
  }

  /** CPU time used so far by the live server processes (spares included), ms. */
  async cpuMs(): Promise<number> {
    const all = [...this.#servers, ...this.#spares];
    const ms = await Promise.all(all.map((s) => s.conn.request(Op.status).then((r) => r.json<{ cpuMs: number }>().cpuMs, () => 0)));
    return ms.reduce((a, b) => a + b, 0);
  }

  /** Every row with its optimizer state, in global row order ([totalRows × width]): for checks. */
  async readAll(): Promise<Float32Array> {
    this.#flushCommits();
    await Promise.all(this.#commits.splice(0).map((c) => c.done));
    const shards = await Promise.all(Array.from({ length: this.k }, (_, i) => this.#readShard(i, READ_FULL)));
    const out = new Float32Array(this.#o.totalRows * this.width);
    for (let g = 0; g < this.#o.totalRows; g++) {
      const s = g % this.k, slot = (g - s) / this.k;
      out.set(shards[s].subarray(slot * this.width, (slot + 1) * this.width), g * this.width);
    }
    return out;
  }

  /** Whether every parity shard equals the encoding of the data shards, bit for bit (xor/rs). */
  async parityConsistent(): Promise<boolean> {
    if (this.protection === 'none') return true;
    this.#flushCommits();
    await Promise.all(this.#commits.splice(0).map((c) => c.done));
    const data = await Promise.all(Array.from({ length: this.k }, (_, i) => this.#readShard(i, READ_CODED)));
    const parity = await Promise.all(Array.from({ length: this.r }, (_, p) => this.#readShard(this.k + p, READ_CODED)));
    const bytes = (f: Float32Array) => new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
    const expected = createCodec(this.protection, this.k, this.r).encode(data.map(bytes));
    return expected.every((e, p) => Buffer.from(e).equals(Buffer.from(bytes(parity[p]))));
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#servers, ...this.#spares];
    await Promise.allSettled(all.map((s) => s.conn.request(Op.shutdown, undefined, 1000)));
    for (const s of all) {
      s.conn.close();
      if (s.proc && s.proc.exitCode === null) s.proc.kill('SIGKILL');
    }
    if (this.#socketDir) rmSync(this.#socketDir, { recursive: true, force: true });
  }
}
