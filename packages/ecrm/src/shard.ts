// One embedding server: a data shard (rows and their optimizer state) or a parity shard (parity of
// k data shards' rows, and a replica of their optimizer state when the state is replicated rather
// than encoded). Rows are placed round-robin: global row g lives on data shard g mod k at slot
// ⌊g / k⌋, and slot j of every data shard forms a stripe with parity slot j.
//
// Updates are two-phase: a prepare computes the new rows (Adagrad), stages them, and stages their
// deltas on every parity server; a commit applies what was staged. Every server gets every commit,
// so all hold the same committed step, and a read of several servers at one committed step is a
// consistent stripe — what degraded reads and the rebuild decode from.
import { readFile, writeFile } from 'node:fs/promises';
import type net from 'node:net';
import { Worker } from 'node:worker_threads';
import { bits, bytes, createCodec, f32words, type CodeMode, type ParityCodec } from './codec.js';
import { initialRowsInto, initialWeight, type BlockLayout } from './initial.js';
import { adagradRow, stateWidth, type EmbeddingOptimizer } from './optim.js';
import { gatherRowsSync, scatterRowsSync, sharedLargePageFloat32Array } from '@kintsugi/cuda-core';
import { Connection, describeAddress, Op, Reader, serve, Writer, type Address, type PooledReply, type Reply } from './protocol.js';
import type { GatherJob, GatherResult } from './gather-worker.js';
import type { RebuildJob, RebuildMessage } from './rebuild-worker.js';
import { decodeStripe, READ_BACKGROUND, READ_CODED, READ_FULL, READ_STATE, readStripe, stripeParts } from './stripe.js';

export type { Address } from './protocol.js';
import { integer, oneOf, rangeError } from './validate.js';


export interface RebuildPlan {
  /** Exactly k healthy servers to decode from: block index (data 0..k−1, parity k..k+r−1) and address. */
  sources: (Address & { block: number })[];
  /** Slots per locked range of the background rebuild. */
  rangeSlots: number;
  /** Pause between ranges (ms): spaces the sources' range reads out on a busy machine. */
  pauseMs: number;
  /**
   * A spare's rehearsal on scratch servers (see #rehearse), for tables of tableSlots slots per
   * block: its rebuild thread is kept for the real rebuild.
   */
  rehearsal?: { tableSlots: number };
}

export interface ShardConfig {
  role: 'data' | 'parity';
  /** Data shard index in [0, k) or parity index in [0, r). */
  index: number;
  k: number;
  /** Parity servers (0 for no fault tolerance). */
  r: number;
  mode: CodeMode | 'none';
  /** Optimizer state inside the code ('encoded') or copied to every parity server ('replicated'). */
  state: 'encoded' | 'replicated';
  dim: number;
  optimizer: EmbeddingOptimizer;
  lr: number;
  eps: number;
  totalRows: number;
  rowsPerTable: number;
  seed: number;
  /** The committed step of the state this server starts with (−1: initial weights). */
  committedStep: number;
  /** Data role: the parity servers, in parity order. */
  parities: Address[];
  /** Present when this server replaces a lost one and must rebuild its contents. */
  rebuild?: RebuildPlan;
  /** Failure injection: die while handling the push of `step`. */
  crash?: { step: number; when: 'prepare' | 'after-first-delta' };
  /**
   * A data shard whose checkpoint the caller restores next (a restarted job, CPR): its rows are
   * not initialised (the restore overwrites them), and requests for them are refused until then.
   */
  restoring?: boolean;
  timeoutMs: number;
}

export { READ_CODED, READ_FULL, READ_STATE } from './stripe.js';
export { initialWeight };

/** Requests that read or write rows: refused by a shard still waiting for its restore. */
const ROW_OPS = new Set<number>([Op.pull, Op.push, Op.prepare, Op.read, Op.readRange, Op.checkpoint, Op.prefetch]);
/** Slots per chunk of a parity server's initial encode. */
const INITIAL_PARITY_CHUNK = 16384;
/** Range copy buffers kept for reuse (one per rebuild reading from this server, with slack). */
const RANGE_COPIES_KEPT = 4;
/**
 * A shard's table: on huge pages, since rows are read and written at random, and shared, so that
 * the background reader's thread reads it in place (see sharedLargePageFloat32Array).
 */
const table = (floats: number) => (floats > 0 ? sharedLargePageFloat32Array(floats) : new Float32Array(0));
function rangeSlots(start: number, count: number): Int32Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) out[i] = start + i;
  return out;
}

/** What a spare stands by for: the servers to connect to, a store to reserve, and their code. */
export interface StandbyOrder {
  servers: Address[];
  timeoutMs: number;
  storeFloats: number;
  code?: { mode: CodeMode; k: number; r: number; state: 'encoded' | 'replicated'; dim: number; optimizer?: EmbeddingOptimizer };
}

/**
 * A rehearsal (see ShardServer.#rehearse): slots per scratch data block, rows a step draws per
 * block, takeovers, and steps before the loss, during the rebuild and after the switch-over. Sized
 * so that V8 compiles the takeover's hot functions within it (~0.3 s of CPU, once per spare).
 */
const REHEARSAL = { slots: 2048, draws: 256, rounds: 3, before: 10, during: 30, after: 10 };
const REHEARSAL_TIMEOUT_MS = 30_000;

/**
 * The coded rows of data block `block` at `slots`, decoded from k other servers (data first, then
 * parity; `conns` by block) at one committed step, `need` or later.
 */
async function decodeBlockRows(code: NonNullable<StandbyOrder['code']>, codec: ParityCodec, block: number, slots: Int32Array, conns: Connection[], need = -1): Promise<Float32Array> {
  const role = { role: 'data' as const, index: block, k: code.k, r: code.r, state: code.state };
  const parts = stripeParts(role, Array.from({ length: code.k + code.r }, (_, b) => b).filter((b) => b !== block).slice(0, code.k));
  for (let attempt = 0; ; attempt++) {
    const { step, data } = await readStripe(parts, (p) => conns[p.block], { slots }, () => undefined);
    if (step >= need) return decodeStripe(role, codec, parts, data).coded;
    // A commit the pull already depends on has not reached every server yet.
    if (attempt >= 1000) throw rangeError('degraded read', `servers at committed step ${need}`, `step ${step}`, true);
    await new Promise((r) => setTimeout(r, attempt < 3 ? 0 : 1));
  }
}

/**
 * Runs the code a failure first runs, before any failure: a degraded read (a stripe read from the
 * sources, decoded here) a few times on two rows, then every server's side of the reads a
 * takeover asks of its sources, often enough for V8 to optimize it: reads of listed slots (a
 * rebuild's 16,384 and hottest 4,096, a degraded read's hundreds), contiguous ranges, touched
 * sets. Otherwise the sources run those in the interpreter while their compiler works beside
 * training: on the 2-core VM, over 5 interleaved pairs of failure runs at step 370 of the report's
 * job, the recovery time went from 44-87 ms (median 63) to 44-64 ms (median 47), and the longest
 * pause from the detection from 25-37 to 23-36 ms. Only reads: no server's state changes.
 */
async function warmReads(code: NonNullable<StandbyOrder['code']>, conns: Connection[], slotsPerBlock: number, done: { rounds: number }): Promise<void> {
  const codec = createCodec(code.mode, code.k, code.r);
  for (let i = 0; i < 8; i++) await decodeBlockRows(code, codec, 0, Int32Array.of(0, 1), conns);
  const replicated = code.state === 'replicated';
  for (let round = 0; round < WARM_READS.rounds && slotsPerBlock > 0; round++, done.rounds++) {
    const n = Math.min(slotsPerBlock, WARM_READS.sizes[round % WARM_READS.sizes.length]);
    // Spread and ascending, as a touched set's slots are.
    const stride = Math.max(1, Math.floor(slotsPerBlock / n));
    const slots = Int32Array.from({ length: n }, (_, j) => (j * stride + round) % slotsPerBlock);
    const start = (round * 997) % Math.max(1, slotsPerBlock - n + 1);
    await Promise.all(conns.map((conn, b) => {
      const parity = b >= code.k;
      // Every other round as a rebuild reads (on the source's background thread).
      const flags = READ_CODED | (round % 2 ? READ_BACKGROUND : 0);
      const reads = [conn.request(Op.read, new Writer().u32(flags).u32(0).array(slots).build())];
      if (replicated) reads.push(conn.request(Op.read, new Writer().u32(READ_STATE).u32(0).array(slots).build()));
      if (round % 4 === 0) reads.push(conn.request(Op.readRange, new Writer().u32(READ_CODED | (round % 8 ? READ_BACKGROUND : 0)).u32(0).u32(start).u32(n).build()));
      if (round % 8 === 0) reads.push(conn.request(Op.touched, new Writer().u32(parity ? 0 : b).build()));
      return Promise.all(reads);
    }));
  }
}

/** The warm-up reads of warmReads: rounds, and slots per read (cycled through). */
const WARM_READS = { rounds: 40, sizes: [16384, 4096, 512, 256] };

/**
 * The process's background reader (gather-worker.ts), shared by its servers: started with the first
 * role that a rebuild may read from, so that its start-up is not in a failure's steps.
 */
let backgroundReader: { worker: Worker; waiting: Map<number, (rows: Float32Array | null) => void>; next: number } | null = null;

function startBackgroundReader(): void {
  if (backgroundReader) return;
  const worker = new Worker(new URL('./gather-worker.js', import.meta.url));
  const reader = { worker, waiting: new Map<number, (rows: Float32Array | null) => void>(), next: 0 };
  worker.unref();
  worker.on('message', (r: GatherResult) => {
    reader.waiting.get(r.id)?.(r.rows);
    reader.waiting.delete(r.id);
  });
  // A failed thread fails nothing: its reads are served on the main thread, and the next one starts it again.
  worker.on('error', () => {
    if (backgroundReader === reader) backgroundReader = null;
    for (const done of reader.waiting.values()) done(null);
    reader.waiting.clear();
  });
  backgroundReader = reader;
}

/** Rows gathered on the background thread, or null if it could not (read on the main thread then). */
function gatherInBackground(job: Omit<GatherJob, 'id'>): Promise<Float32Array | null> {
  const reader = backgroundReader;
  if (!reader) return Promise.resolve(null);
  const id = reader.next++;
  return new Promise((done) => {
    reader.waiting.set(id, done);
    reader.worker.postMessage({ ...job, id } satisfies GatherJob);
  });
}

/** A rebuild thread waiting for its job; a failure before the job shows when the job is posted. */
function startRebuildWorker(): Worker {
  const worker = new Worker(new URL('./rebuild-worker.js', import.meta.url));
  worker.on('error', () => undefined);
  return worker;
}

/** A parity server's stage request: answered once the named data shards' deltas are all staged. */
interface Staging {
  step: number;
  from: Int32Array;
  done: () => void;
  fail: (e: Error) => void;
}

interface StagedDelta {
  step: number;
  dataIndex: number;
  slots: Int32Array;
  delta: Uint8Array;
  state: Float32Array;
}

export class ShardServer {
  #config: ShardConfig | null = null;
  #codec: ParityCodec | null = null;
  #slots = 0;
  #width = 0;
  #coded = 0;
  #sw = 0;
  /** Data: rows × width (weights then state). Parity: rows × coded width. */
  #store: Float32Array<ArrayBufferLike> = new Float32Array(0);
  /** Parity with replicated state: each data shard's state, slots × state width. */
  #replicas: Float32Array[] = [];
  #committed = -1;
  /**
   * Bumped by everything that writes the store or the replicas: a background read keeps what the
   * reader thread gathered only if this is unchanged when it arrives (nothing was written while
   * the thread read; see #readInBackground).
   */
  #epoch = 0;
  /** Configured with `restoring`: the rows hold nothing until a restore. */
  #awaitingRestore = false;
  /**
   * Commits arrive one-way (no ack): one this server could not apply leaves its rows out of step, so
   * every later request but a status probe fails with its error, and the trainer sees it there.
   */
  #commitError: Error | null = null;
  #stagedRows = new Map<number, { step: number; slots: Int32Array; rows: Float32Array }>();
  #stagedDeltas = new Map<number, StagedDelta[]>();
  /** A delta that could not be staged, by transaction: the trainer's stage request reports it. */
  #deltaErrors = new Map<number, { step: number; error: Error }>();
  /** Stage requests waiting for deltas still on their way, by transaction. */
  #staging = new Map<number, Staging>();
  #parities: Connection[] | null = null;
  // Rebuild state: which slots hold current data; ranges being fetched; deltas for absent slots.
  #present: Uint8Array | null = null;
  #pending = new Map<number, StagedDelta[]>();
  /**
   * Degraded reads under way (a prefetch's, a pull's), by id, and per slot the id of the one
   * fetching it (0: none): later requests for those slots wait for it. Typed arrays rather than a
   * Map and Sets of slots: a step's thousands of entries would be promoted out of the young
   * generation and bring on full collections of the spare's heap just as it takes over.
   */
  #fetches = new Map<number, Promise<void>>();
  #fetchingBy: Uint32Array | null = null;
  #fetchId = 0;
  /** Per source: the connection for degraded reads (the rebuild worker has its own, so a read for
   * training never queues behind a range's bytes). */
  #sources: { block: number; conn: Connection }[] = [];
  /** A spare's connections to every server, opened ahead of a failure, by address. */
  #standby = new Map<string, Connection>();
  /** What a spare stands by for, with its connections in server order (for hedged pulls). */
  #standing: { order: StandbyOrder; conns: Connection[]; codec: ParityCodec } | null = null;
  /**
   * The rows this spare decoded for its last hedged pull (state encoded: whole rows). Taking that
   * block's role at that committed step, it starts with them present: the push of the step that
   * found the failure updates the same rows, and needs no degraded read for them.
   */
  #hedgedRows: { need: number; block: number; slots: Int32Array; coded: Float32Array } | null = null;
  /** A spare's store, allocated and faulted in ahead of a failure (fresh pages cost ~2 µs each). */
  #reserve: Float32Array | null = null;
  /** A spare's rehearsal of a takeover (see #rehearse): rounds done, wall time, and its error if any. */
  #rehearsal: { rounds: number; ms: number; error: string | null } | null = null;
  /** A standby spare's warm-up of the servers' reads (see warmReads). */
  #warmReads: { rounds: number; ms: number; error: string | null } | null = null;
  /** A spare's rebuild thread, started ahead of a failure (see rebuild-worker.ts); null once used. */
  #rebuildWorker: Worker | null = null;
  #rebuildDone: Promise<unknown> | null = null;
  /**
   * Per data block: the slots whose rows may differ from their initial values, as the number of
   * updates seen per slot, saturating at 255 (a data server keeps its own block's, a parity server
   * every block's, from the deltas it applies). A rebuild reads and decodes only these; it
   * computes the others, as every server did at start. Each is a superset of the block's updated
   * slots; `#touchedKnown` names the blocks whose set is complete
   * (a replacement's is, once merged with the set it fetched).
   */
  #touched = new Map<number, Uint8Array>();
  #touchedKnown = new Set<number>();
  /** After a rebuild that read only touched slots: the absent ones hold their initial rows. */
  #initialAbsent = false;
  /** A replacement's touched set, being learned from its sources (see #learnTouched). */
  #touchedLearned: Promise<Uint8Array | null> | null = null;
  /** backgroundReads: rebuild reads served by the background thread; backgroundRereads: those read
   * again here because the store was written meanwhile. */
  stats = { degradedReads: 0, degradedSlots: 0, initialSlots: 0, prefetches: 0, ranges: 0, rebuiltSlots: 0, retries: 0, backgroundReads: 0, backgroundRereads: 0 };
  /** Range replies' copy buffers, back from the socket (see #readRange). */
  readonly #rangeCopies: Buffer[] = [];

  /** TCP for peers anywhere; `unix` (when listening on a socket path too) for peers on this host. */
  constructor(readonly server: net.Server, readonly unix: net.Server | null = null) {}

  static async listen(host = '127.0.0.1', port = 0, path?: string): Promise<ShardServer> {
    let self: ShardServer | null = null;
    const handler = (op: number, body: Reader) => self!.handle(op, body);
    const [server, unix] = await Promise.all([serve(handler, host, port), path ? serve(handler, host, 0, path) : null]);
    self = new ShardServer(server, unix);
    return self;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get path(): string | null {
    return this.unix ? (this.unix.address() as string) : null;
  }

  get #cfg(): ShardConfig {
    if (!this.#config) throw rangeError('request', 'a configured server (send configure first)', 'an unconfigured one', true);
    return this.#config;
  }

  handle(op: number, body: Reader): Reply | Promise<Reply> {
    if (this.#commitError && op !== Op.status) throw this.#commitError;
    if (this.#awaitingRestore && ROW_OPS.has(op)) throw rangeError('request', 'a shard whose checkpoint has been restored (send restore first)', 'a shard configured to be restored', true);
    switch (op) {
      case Op.configure: return this.#configure(body.json<ShardConfig>());
      case Op.pull: return this.#pull(body);
      case Op.push: return this.#push(body);
      case Op.prepare: return this.#prepare(body);
      case Op.delta: return this.#delta(body);
      case Op.stage: return this.#stage(body);
      case Op.commit: return this.#commitOrFail(body);
      case Op.abort: return this.#abort(body.u32() - 1);
      case Op.read: return this.#read(body);
      case Op.readRange: return this.#readRange(body);
      case Op.checkpoint: return this.#checkpoint(body.json<{ path: string }>().path);
      case Op.restore: return this.#restore(body.json<{ path: string }>().path);
      case Op.status: return this.#status();
      case Op.rebuild: return this.#rebuild();
      case Op.peers: return this.#setPeers(body.json<Address[]>());
      case Op.prefetch: return this.#prefetch(body);
      case Op.touched: return this.#touchedReply(body.u32());
      case Op.hedgedPull: return this.#hedgedPull(body);
      case Op.standby: return this.#openStandby(body.json<StandbyOrder>());
      case Op.crash: process.kill(process.pid, 'SIGKILL'); return;
      case Op.shutdown: setImmediate(() => process.exit(0)); return;
      default: throw rangeError('op', 'a known request', op);
    }
  }

  async #configure(c: ShardConfig): Promise<Buffer> {
    this.#epoch++;
    oneOf(c.role, 'config.role', ['data', 'parity'] as const);
    integer(c.k, 'config.k', 1, 254);
    integer(c.r, 'config.r', 0, 4);
    integer(c.dim, 'config.dim', 1, 4096);
    integer(c.totalRows, 'config.totalRows', 1, 2 ** 31 - 1);
    integer(c.index, 'config.index', 0, (c.role === 'data' ? c.k : c.r) - 1);
    this.#config = c;
    this.#codec = c.mode === 'none' ? null : createCodec(c.mode, c.k, c.r);
    if (this.#codec) startBackgroundReader();  // a rebuild may read from this server
    this.#slots = Math.ceil(c.totalRows / c.k);
    this.#sw = stateWidth(c.optimizer, c.dim);
    this.#width = c.dim + this.#sw;
    this.#coded = c.state === 'encoded' ? this.#width : c.dim;
    this.#committed = c.committedStep;
    this.#dropStaged(() => true, 'the server was reconfigured');
    this.#closePeers();
    this.#touched.clear();
    this.#touchedKnown.clear();
    this.#initialAbsent = false;
    this.#touchedLearned = null;
    // A fresh server's rows are all initial; a replacement's sets come with its rebuild.
    if (!c.rebuild) for (const b of c.role === 'data' ? [c.index] : Array.from({ length: c.k }, (_, j) => j)) this.#touchedKnown.add(b);
    if (c.rebuild) {
      // Contents come from the rebuild; until a slot arrives, requests for it decode on demand.
      const floats = this.#slots * (c.role === 'data' ? this.#width : this.#coded);
      this.#store = this.#reserve?.length === floats ? this.#reserve : table(floats);
      this.#reserve = null;
      this.#replicas = c.role === 'parity' && c.state === 'replicated' ? Array.from({ length: c.k }, () => table(this.#slots * this.#sw)) : [];
      this.#present = new Uint8Array(this.#slots);
      this.#fetchingBy = new Uint32Array(this.#slots);
      this.#installHedged();
      // Connected before the reply: the first degraded read may arrive right after it.
      this.#closeSources();
      this.#sources = await Promise.all(c.rebuild.sources.map(async (s) => {
        const label = `rebuild source ${s.block} (${describeAddress(s)})`;
        const ready = this.#standby.get(describeAddress(s));
        this.#standby.delete(describeAddress(s));
        const conn = ready && !ready.closed ? ready : await Connection.connect(s, label, c.timeoutMs);
        conn.label = label;
        return { block: s.block, conn };
      }));
      // Asked for now, not at the rebuild's start: degraded reads in the meantime skip the reads
      // of rows never updated once it is known.
      this.#touchedLearned = this.#learnTouched();
    } else {
      this.#present = null;
      this.#fetchingBy = null;
      if (c.role === 'data') this.#store = c.restoring ? table(this.#slots * this.#width) : this.#initialRows(c.index);
      else this.#initialParity();
    }
    this.#hedgedRows = null;  // installed above, or not this role's
    this.#awaitingRestore = c.role === 'data' && !c.rebuild && c.restoring === true;
    this.#closeStandby();  // this server has a role now: what the rebuild did not take is not needed
    if (!c.rebuild) this.#dropRebuildWorker();
    return new Writer().json({ slots: this.#slots, width: this.#width, coded: this.#coded }).build();
  }

  #initialRows(shard: number): Float32Array {
    const rows = table(this.#slots * this.#width);
    initialRowsInto(this.#layout(shard), 0, this.#slots, rows, this.#width);
    return rows;
  }

  #layout(index: number): BlockLayout {
    const c = this.#cfg;
    return { seed: c.seed, k: c.k, index, dim: c.dim, totalRows: c.totalRows, rowsPerTable: c.rowsPerTable };
  }

  /** Parity of the initial tables, computed here from the same deterministic initialisation. */
  #initialParity(): void {
    const c = this.#cfg, w = this.#width, cw = this.#coded;
    this.#store = table(this.#slots * cw);
    // In chunks of slots: a parity row depends only on the data rows of its slot, so this is the
    // parity of the whole tables, without k of them in memory at once (a parity server held
    // k + 2 tables' worth while it started: 350 MB for 44 MB shards).
    const chunk = Math.min(this.#slots, INITIAL_PARITY_CHUNK);
    const rows = Array.from({ length: c.k }, () => new Float32Array(chunk * w));
    for (let start = 0; start < this.#slots; start += chunk) {
      const n = Math.min(chunk, this.#slots - start);
      const data = rows.map((r, s) => {
        r.fill(0, 0, n * w);  // the state starts at zero, and slots past the last row stay zero
        initialRowsInto(this.#layout(s), start, n, r, w);
        return bytes(this.#codedOf(r, n));
      });
      bytes(this.#store).set(this.#codec!.encode(data)[c.index], start * cw * 4);
    }
    this.#replicas = c.state === 'replicated' ? Array.from({ length: c.k }, () => table(this.#slots * this.#sw)) : [];
  }

  /** The coded part (or the state part) of `n` full rows, contiguous. */
  #codedOf(rows: Float32Array, n: number, part = READ_CODED): Float32Array {
    const w = this.#width, cw = part === READ_CODED ? this.#coded : this.#sw, from = part === READ_CODED ? 0 : this.#cfg.dim;
    if (part === READ_CODED && cw === w) return rows.length === n * w ? rows : rows.slice(0, n * w);
    return f32words(gatherRowsSync(bits(rows.subarray(0, n * w)), w, rangeSlots(0, n), { col: from, cols: cw }));
  }

  #checkSlots(slots: Int32Array): void {
    // Indexed loops over typed arrays here and below: these run every step, in baseline code for
    // the first hundreds of steps, where a for-of iterator costs several times more.
    const n = this.#slots;
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i];
      if (s < 0 || s >= n) throw rangeError('slots', `slots in [0, ${n - 1}]`, s);
    }
  }

  async #pull(body: Reader): Promise<Buffer[]> {
    body.u32();
    const slots = body.i32s();
    this.#checkSlots(slots);
    await this.#ensure(slots);
    const out = gatherRowsSync(bits(this.#store), this.#width, slots, { cols: this.#cfg.dim });
    return new Writer().array(f32words(out)).parts;  // fresh rows: written from where they are, not joined first
  }

  /** Copies of the committed rows at `slots`, packed ([slots × width]). */
  #gather(slots: Int32Array): Float32Array {
    return f32words(gatherRowsSync(bits(this.#store), this.#width, slots));
  }

  /** The updated rows for a push, computed from the committed ones (nothing is written yet). */
  #updatedRows(slots: Int32Array, grads: Float32Array, before = this.#gather(slots)): Float32Array {
    const c = this.#cfg, w = this.#width;
    if (grads.length !== slots.length * c.dim) throw rangeError('grads', `${slots.length * c.dim} floats (slots × dim)`, grads.length, true);
    const rows = before.slice();
    for (let i = 0; i < slots.length; i++) adagradRow(c.optimizer, rows, c.dim, grads, i * c.dim, c.lr, c.eps, i * w);
    return rows;
  }

  #writeRows(slots: Int32Array, rows: Float32Array): void {
    this.#epoch++;
    // The scatter counts the updates in the same pass (its prefetches cover the counts too).
    scatterRowsSync(bits(this.#store), this.#width, slots, bits(rows), { counts: this.#touchedCounts(this.#cfg.index) });
  }

  /** A block's updates seen per slot (a byte per slot, saturating at 255). */
  #touchedCounts(block: number): Uint8Array {
    let set = this.#touched.get(block);
    if (!set) this.#touched.set(block, (set = new Uint8Array(this.#slots)));
    return set;
  }

  #markTouched(block: number, slots: Int32Array): void {
    const set = this.#touchedCounts(block);
    // Updates seen, saturating: the rebuild reads the most updated (the hottest) rows first.
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i];
      if (set[s] < 255) set[s]++;
    }
  }

  /** A block's touched set (updates seen per slot), with the committed step it holds at. */
  #touchedReply(block: number): Buffer {
    if (!this.#touchedKnown.has(block)) throw rangeError('touched slots', `a block this server keeps a complete record of`, `block ${block}`, true);
    return new Writer().u32(this.#committed + 1).array(this.#touched.get(block) ?? new Uint8Array(this.#slots)).build();
  }

  /** An unprotected push (no fault tolerance, checkpoint baselines): apply at once. */
  async #push(body: Reader): Promise<void> {
    const step = body.u32() - 1, slots = body.i32s(), grads = body.f32s();
    // Injected death inside a push (without parity there is no later point to die at).
    if (this.#cfg.crash?.step === step) process.kill(process.pid, 'SIGKILL');
    this.#checkSlots(slots);
    await this.#ensure(slots);
    this.#writeRows(slots, this.#updatedRows(slots, grads));
    this.#committed = step;
  }

  async #prepare(body: Reader): Promise<void> {
    const c = this.#cfg;
    const step = body.u32() - 1, txn = body.u32(), slots = body.i32s(), grads = body.f32s();
    if (c.crash?.step === step && c.crash.when === 'prepare') process.kill(process.pid, 'SIGKILL');
    this.#checkSlots(slots);
    await this.#ensure(slots);
    if (grads.length !== slots.length * c.dim) throw rangeError('grads', `${slots.length * c.dim} floats (slots × dim)`, grads.length, true);
    const before = this.#gather(slots);
    const rows = this.#updatedRows(slots, grads, before);
    this.#stagedRows.set(txn, { step, slots, rows });
    if (!this.#codec || slots.length === 0) return;
    // Difference propagation: the parity servers cannot run Adagrad on a parity row, so they get
    // the change of each row (and of its optimizer state), computed here by the row's owner with
    // one native kernel call over all the rows of the push (one delta message per parity server).
    const coded = (f: Float32Array) => (this.#coded === this.#width ? f : this.#codedOf(f, slots.length));
    const delta = this.#codec.delta(bytes(coded(before)), bytes(coded(rows)));
    const state = c.state === 'replicated' ? this.#codedOf(rows, slots.length, READ_STATE) : new Float32Array(0);
    const payload = new Writer().u32(step + 1).u32(txn).u32(c.index).array(slots).array(delta).array(state).build();
    // One-way: each parity server tells the trainer itself when every delta of the transaction is
    // staged (see #stage), so this prepare is answered without a round trip to the parities.
    const parities = await this.#parityConnections();
    if (c.crash?.step === step && c.crash.when === 'after-first-delta') {
      await parities[0].send(Op.delta, payload);
      process.kill(process.pid, 'SIGKILL');
    }
    await Promise.all(parities.map((p) => p.send(Op.delta, payload)));
  }

  #delta(body: Reader): void {
    const step = body.u32() - 1, txn = body.u32(), dataIndex = body.u32();
    try {
      const slots = body.i32s(), delta = body.u8s(), state = body.f32s();
      this.#checkSlots(slots);
      if (delta.length !== slots.length * this.#coded * 4) throw rangeError('delta', `${slots.length * this.#coded * 4} bytes`, delta.length, true);
      const list = this.#stagedDeltas.get(txn) ?? [];
      list.push({ step, dataIndex, slots, delta, state });
      this.#stagedDeltas.set(txn, list);
    } catch (e) {
      this.#deltaErrors.set(txn, { step, error: new Error(`the delta of data shard ${dataIndex} for step ${step}: ${(e as Error).message}`) });
    }
    this.#checkStaging(txn);
  }

  /**
   * The trainer's half of a parity server's prepare: answered once the deltas of transaction `txn`
   * from the listed data shards are all staged (they come straight from those shards), failed by
   * a delta that could not be staged or by an abort of the step.
   */
  #stage(body: Reader): Promise<void> {
    const step = body.u32() - 1, txn = body.u32(), from = body.i32s();
    from.forEach((d) => integer(d, 'data shard', 0, this.#cfg.k - 1));
    this.#staging.get(txn)?.fail(new Error(`transaction ${txn} was staged again`));
    return new Promise((done, fail) => {
      this.#staging.set(txn, { step, from, done, fail });
      this.#checkStaging(txn);
    });
  }

  #checkStaging(txn: number): void {
    const waiting = this.#staging.get(txn);
    if (!waiting) return;
    const failed = this.#deltaErrors.get(txn);
    const staged = this.#stagedDeltas.get(txn) ?? [];
    if (!failed && !Array.from(waiting.from).every((d) => staged.some((x) => x.dataIndex === d))) return;
    this.#staging.delete(txn);
    if (failed) waiting.fail(failed.error);
    else waiting.done();
  }

  /**
   * Drops what is staged for the steps `which` selects (committed, aborted, or all on a
   * reconfiguration): rows, deltas, delta errors, and stage requests, which fail saying `why`.
   */
  #dropStaged(which: (step: number) => boolean, why: string): void {
    for (const [t, s] of this.#stagedRows) if (which(s.step)) this.#stagedRows.delete(t);
    for (const [t, list] of this.#stagedDeltas) if (which(list[0].step)) this.#stagedDeltas.delete(t);
    for (const [txn, w] of this.#staging) {
      if (!which(w.step)) continue;
      this.#staging.delete(txn);
      w.fail(new Error(`Expected the deltas of step ${w.step} to be staged but ${why}`));
    }
    for (const [txn, e] of this.#deltaErrors) if (which(e.step)) this.#deltaErrors.delete(txn);
  }

  #commitOrFail(body: Reader): void {
    try {
      this.#commit(body.u32() - 1, body.u32());
    } catch (e) {
      this.#commitError = new Error(`Expected this server to apply every commit but one failed: ${(e as Error).message}`);
      throw this.#commitError;
    }
  }

  #commit(step: number, txn: number): void {
    const rows = this.#stagedRows.get(txn);
    if (rows) this.#writeRows(rows.slots, rows.rows);
    for (const d of this.#stagedDeltas.get(txn) ?? []) this.#applyDelta(d);
    // Whatever else is staged at or before this step belongs to aborted attempts (a delta from a
    // shard that died mid-push can arrive after the abort): it must never be applied.
    this.#dropStaged((s) => s <= step, `step ${step} was committed`);
    this.#committed = Math.max(this.#committed, step);
  }

  #abort(step: number): void {
    this.#dropStaged((s) => s === step, `step ${step} was aborted`);
  }

  /** Folds a committed delta into the parity rows; slots not yet rebuilt keep it for later. */
  #applyDelta(d: StagedDelta, onlyAbsent = false): void {
    this.#epoch++;
    const cw = this.#coded, sw = this.#sw, present = this.#present;
    // Every slot of the delta counts as updated, applied now or held for a slot not rebuilt yet; a
    // delta applied whole (no rebuild under way) is counted by the scatter that writes it.
    const counts = !onlyAbsent && !present ? this.#touchedCounts(d.dataIndex) : undefined;
    if (!onlyAbsent && !counts) this.#markTouched(d.dataIndex, d.slots);
    const words = (b: Uint8Array) => (b.byteOffset % 4 === 0 ? new Int32Array(b.buffer, b.byteOffset, b.byteLength >> 2) : new Int32Array(b.slice().buffer));
    let slots = d.slots, delta = words(d.delta), state = bits(d.state);
    if (present) {
      const keep: number[] = [];
      d.slots.forEach((s, i) => {
        if (!present[s]) {
          if (!onlyAbsent) {
            const list = this.#pending.get(s) ?? [];
            list.push({ ...d, slots: Int32Array.of(s), delta: d.delta.subarray(i * cw * 4, (i + 1) * cw * 4), state: d.state.subarray(i * sw, (i + 1) * sw) });
            this.#pending.set(s, list);
          }
        } else keep.push(i);
      });
      if (keep.length === 0) return;
      if (keep.length < d.slots.length) {
        const idx = Int32Array.from(keep);
        slots = idx.map((i) => d.slots[i]);
        delta = gatherRowsSync(delta, cw, idx);
        if (state.length) state = gatherRowsSync(state, sw, idx);
      }
    }
    if (slots.length === 0) return;
    const store = bits(this.#store);
    if (this.#codec!.mode === 'xor') scatterRowsSync(store, cw, slots, delta, { xor: true, counts });
    else {
      // Gather the touched parity rows, apply the delta in one kernel call, scatter them back.
      const rows = gatherRowsSync(store, cw, slots);
      this.#codec!.apply(this.#cfg.index, d.dataIndex, new Uint8Array(delta.buffer, delta.byteOffset, delta.byteLength), new Uint8Array(rows.buffer));
      scatterRowsSync(store, cw, slots, rows, { counts });
    }
    if (this.#replicas.length) scatterRowsSync(bits(this.#replicas[d.dataIndex]), sw, slots, state);
  }

  async #read(body: Reader): Promise<Buffer[]> {
    const flags = body.u32(), part = flags & ~READ_BACKGROUND, which = body.u32(), slots = body.i32s();
    this.#checkSlots(slots);
    const rows = flags & READ_BACKGROUND ? await this.#readInBackground(part, { slots, start: 0, count: slots.length }) : null;
    if (rows) return new Writer().u32(this.#committed + 1).array(rows).parts;
    await this.#ensure(slots);
    return new Writer().u32(this.#committed + 1).array(this.#readNow(part, which, slots)).parts;
  }

  /**
   * A rebuild's read on the background reader's thread: the rows of the part if they are rows of
   * the store as it stands (a complete server's coded rows, or its full data rows), gathered while
   * the main thread goes on; null when the part is anything else, the thread is not there, or
   * something wrote the store meanwhile (the read is then served here, from the store as it is
   * now). Commits come once a step, and a data shard's store is written only by them, so most
   * reads land between two: measured by the recovery they save (see the README).
   */
  async #readInBackground(part: number, what: { slots: Int32Array | null; start: number; count: number }): Promise<Float32Array | null> {
    const c = this.#cfg, w = this.#width;
    const whole = c.role === 'parity' ? part === READ_CODED : part === READ_FULL || (part === READ_CODED && this.#coded === w);
    if (this.#present || !whole || !backgroundReader) return null;
    const epoch = this.#epoch, store = this.#store;
    const rows = await gatherInBackground({ store, width: c.role === 'parity' ? this.#coded : w, ...what });
    const kept = rows && this.#epoch === epoch && this.#store === store ? rows : null;
    if (kept) this.stats.backgroundReads++;
    else this.stats.backgroundRereads++;
    return kept;
  }

  /**
   * A contiguous range of slots (the rebuild's unit): where the part is stored contiguously the
   * reply is built straight from the store, without a per-slot gather.
   */
  async #readRange(body: Reader): Promise<PooledReply | Buffer[]> {
    const flags = body.u32(), part = flags & ~READ_BACKGROUND, which = body.u32(), start = body.u32(), count = body.u32();
    if (start + count > this.#slots) throw rangeError('range', `slots in [0, ${this.#slots - 1}]`, `${start}..${start + count - 1}`);
    // The background thread's rows are a fresh copy already.
    const rows = flags & READ_BACKGROUND ? await this.#readInBackground(part, { slots: null, start, count }) : null;
    if (rows) return new Writer().u32(this.#committed + 1).array(rows).parts;
    if (this.#present) await this.#ensure(rangeSlots(start, count));
    const c = this.#cfg, w = this.#width;
    let out: Float32Array;
    if (c.role === 'parity' && part === READ_CODED) out = this.#store.subarray(start * this.#coded, (start + count) * this.#coded);
    else if (c.role === 'parity' && part === READ_STATE && this.#replicas[which]) out = this.#replicas[which].subarray(start * this.#sw, (start + count) * this.#sw);
    else if (c.role === 'data' && (part === READ_FULL || (part === READ_CODED && this.#coded === w))) out = this.#store.subarray(start * w, (start + count) * w);
    else out = this.#readNow(part, which, rangeSlots(start, count));
    // Copied now (a socket may hold what it has not sent yet by reference, and a commit may change
    // the store meanwhile): the reply is the state at the committed step it names. The copies are
    // pooled: a fresh megabyte per range would fault its pages in every time.
    const bytesOut = 8 + out.byteLength;
    const buf = this.#rangeCopies.pop() ?? Buffer.allocUnsafeSlow(bytesOut);
    const copy = buf.length >= bytesOut ? buf : Buffer.allocUnsafeSlow(bytesOut);
    copy.writeUInt32LE(this.#committed + 1, 0);
    copy.writeUInt32LE(out.length, 4);
    copy.set(new Uint8Array(out.buffer, out.byteOffset, out.byteLength), 8);
    return {
      parts: [copy.subarray(0, bytesOut)],
      release: () => {
        if (this.#rangeCopies.length < RANGE_COPIES_KEPT) this.#rangeCopies.push(copy);
      },
    };
  }

  #readNow(part: number, which: number, slots: Int32Array): Float32Array {
    const c = this.#cfg;
    if (c.role === 'parity') {
      const src = part === READ_STATE ? this.#replicas[which] : this.#store, w = part === READ_STATE ? this.#sw : this.#coded;
      if (!src) throw rangeError('read part', 'coded rows, or state on a parity server holding replicas', part);
      return f32words(gatherRowsSync(bits(src), w, slots));
    }
    const rows = this.#gather(slots);
    return part === READ_FULL ? rows : this.#codedOf(rows, slots.length, part);
  }

  async #checkpoint(path: string): Promise<Buffer> {
    if (this.#present) await this.#ensure(rangeSlots(0, this.#slots));
    const head = Buffer.alloc(4);
    head.writeInt32LE(this.#committed, 0);
    await writeFile(path, Buffer.concat([head, Buffer.from(bytes(this.#store))]));
    return new Writer().u32(this.#committed + 1).build();
  }

  async #restore(path: string): Promise<Buffer> {
    const buf = await readFile(path);
    this.#epoch++;
    const expected = this.#store.byteLength + 4;
    if (buf.length !== expected) throw rangeError(`checkpoint ${path}`, `${expected} bytes`, buf.length, true);
    this.#committed = buf.readInt32LE(0);
    bytes(this.#store).set(buf.subarray(4));
    this.#awaitingRestore = false;
    this.#present = null;
    this.#fetchingBy = null;
    // Any row may differ from its initial value now.
    if (this.#cfg.role === 'data') this.#touched.set(this.#cfg.index, new Uint8Array(this.#slots).fill(1));
    return new Writer().u32(this.#committed + 1).build();
  }

  #status(): Buffer {
    const c = this.#config;
    return new Writer().json({
      pid: process.pid, cpuMs: (process.cpuUsage().user + process.cpuUsage().system) / 1000, role: c?.role ?? null, index: c?.index ?? null, committedStep: this.#committed,
      rebuilding: this.#present !== null && !this.#initialAbsent, present: this.#present ? this.#present.reduce((a, b) => a + b, 0) : this.#slots, slots: this.#slots, stats: this.stats,
      rehearsal: this.#rehearsal, warmReads: this.#warmReads, rebuildThreadReady: this.#rebuildWorker !== null && this.#rebuildWorker.threadId >= 0,
    }).build();
  }

  #setPeers(peers: Address[]): void {
    this.#cfg.parities = peers;
    this.#closePeers();
  }

  #closePeers(): void {
    for (const p of this.#parities ?? []) p.close();
    this.#parities = null;
  }

  async #parityConnections(): Promise<Connection[]> {
    const c = this.#cfg;
    if (!this.#parities || this.#parities.some((p) => p.closed)) {
      this.#closePeers();
      this.#parities = await Promise.all(c.parities.map((a, i) => Connection.connect(a, `parity ${i} (${describeAddress(a)})`, c.timeoutMs)));
    }
    return this.#parities;
  }

  // ---- rebuild and degraded reads ---------------------------------------------------------------

  /**
   * Makes sure the slots hold current data: absent ones are decoded on demand (a degraded read),
   * also those of the range being rebuilt — waiting for a whole range would stall training for
   * longer than decoding the few rows a step touches. Whichever install comes second skips the
   * slots the first one installed (they may have been updated since), so both orders are exact.
   */
  async #ensure(slots: Int32Array): Promise<void> {
    const present = this.#present;
    if (!present) return;
    if (this.#initialAbsent) {
      const absent = slots.filter((s) => !present[s]);
      if (absent.length > 0) this.#installInitial(absent);
      return;
    }
    const by = this.#fetchingBy!;
    const id = this.#nextFetchId();
    const waits: Promise<void>[] = [];
    const missing = new Int32Array(slots.length);
    let n = 0;
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i];
      if (present[s] || by[s] === id) continue;  // present, or listed already (a repeated slot)
      if (by[s] !== 0) {
        const under = this.#fetches.get(by[s])!;
        if (!waits.includes(under)) waits.push(under);
        continue;
      }
      by[s] = id;
      missing[n++] = s;
    }
    if (n > 0) {
      const listed = missing.subarray(0, n);
      this.stats.degradedReads++;
      this.stats.degradedSlots += n;
      const fetch = this.#fetch(listed).finally(() => {
        for (let i = 0; i < n; i++) if (by[listed[i]] === id) by[listed[i]] = 0;
        this.#fetches.delete(id);
      });
      this.#fetches.set(id, fetch);
      waits.push(fetch);
    }
    await Promise.all(waits);
  }

  /** An id no degraded read under way holds (ids wrap around after 2^32 - 1). */
  #nextFetchId(): number {
    do this.#fetchId = this.#fetchId === 0xffffffff ? 1 : this.#fetchId + 1;
    while (this.#fetches.has(this.#fetchId));
    return this.#fetchId;
  }

  /**
   * Rows the trainer will ask for next (its next batch's), decoded now while it computes, so its
   * next pull finds them present rather than waiting for a degraded read.
   */
  async #prefetch(body: Reader): Promise<void> {
    const slots = body.i32s();
    this.#checkSlots(slots);
    if (this.#present) this.stats.prefetches++;
    await this.#ensure(slots);
  }

  /**
   * Reads the slots from the sources at one committed step, decodes and installs absent ones; a
   * data block's slots never updated get their initial rows instead, with no reads.
   */
  async #fetch(slots: Int32Array): Promise<void> {
    const c = this.#cfg;
    const touched = c.role === 'data' && this.#touchedKnown.has(c.index) ? this.#touched.get(c.index) : undefined;
    if (touched) {
      const initial = slots.filter((s) => !touched[s]);
      if (initial.length > 0) {
        this.#installInitial(initial);
        if (initial.length === slots.length) return;
        slots = slots.filter((s) => touched[s]);
      }
    }
    const parts = stripeParts(c, this.#sources.map((s) => s.block));
    const { step, data } = await readStripe(parts, (p) => this.#sources.find((s) => s.block === p.block)!.conn, { slots }, () => this.stats.retries++);
    const { coded, states } = decodeStripe(c, this.#codec!, parts, data);
    this.#install(slots, step, coded, states);
  }

  /** Installs the initial rows of a data block's slots (ones never updated). */
  #installInitial(slots: Int32Array): void {
    this.#epoch++;
    const c = this.#cfg, cw = this.#coded, layout = this.#layout(c.index);
    const coded = new Float32Array(slots.length * cw);
    for (let n = 0; n < slots.length; n++) initialRowsInto(layout, slots[n], 1, coded, cw, n * cw);
    const states = c.state === 'replicated' ? [new Float32Array(slots.length * this.#sw)] : [];
    this.stats.initialSlots += slots.length;
    this.#install(slots, this.#committed, coded, states);
  }

  /**
   * A replacement's touched sets, from its sources: a data block's from a parity source (which
   * applied every delta of it), a parity's from each data source; each merged with the marks of
   * the updates this server applied since it took the role. Returns the set the rebuild of a data
   * block may skip by (null: none learned, everything is read).
   */
  async #learnTouched(): Promise<Uint8Array | null> {
    const c = this.#cfg;
    const asks = c.role === 'data'
      ? this.#sources.filter((s) => s.block >= c.k).slice(0, 1).map((s) => ({ conn: s.conn, block: c.index }))
      : this.#sources.filter((s) => s.block < c.k).map((s) => ({ conn: s.conn, block: s.block }));
    if (asks.length === 0) return null;
    try {
      for (const a of asks) {
        const set = await this.#fetchTouched(a.conn, a.block);
        const mine = this.#touched.get(a.block);
        if (mine) for (let i = 0; i < set.length; i++) set[i] = Math.min(255, set[i] + mine[i]);
        this.#touched.set(a.block, set);
        this.#touchedKnown.add(a.block);
      }
    } catch {
      return null;  // a source without a complete record: the rebuild reads every slot
    }
    return c.role === 'data' ? this.#touched.get(c.index)! : null;
  }

  /** A source's touched set of a block, once it holds the committed step this server started at. */
  async #fetchTouched(conn: Connection, block: number): Promise<Uint8Array> {
    for (let attempt = 0; ; attempt++) {
      const reply = await conn.request(Op.touched, new Writer().u32(block).build());
      const step = reply.u32() - 1;
      if (step >= this.#cfg.committedStep) {
        const set = reply.u8s();
        if (set.length !== this.#slots) throw rangeError('touched slots', `${this.#slots} entries`, set.length, true);
        return set;
      }
      if (attempt >= 1000) throw rangeError('touched slots', `a source at committed step ${this.#cfg.committedStep}`, `step ${step}`, true);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Installs decoded rows (read at committed `step`) into the slots still absent. */
  #install(slots: Int32Array, step: number, coded: Float32Array, states: Float32Array[]): void {
    this.#epoch++;
    const c = this.#cfg, present = this.#present!, cw = this.#coded, sw = this.#sw;
    const pending = this.#pending.size > 0 ? this.#pending : null;
    const rowWidth = c.role === 'data' ? this.#width : cw;
    if (states.length === 0 && rowWidth === cw) {
      // Absent slots take their row and are marked present in one native pass (a JS loop over a
      // rebuild read's 16,384 slots cost ~1 ms of the main thread's CPU; the recovery time did not
      // change measurably, 5 interleaved pairs at step 370: 38-73 against 26-86 ms). With deltas
      // waiting (a parity's rebuild), only the slots without any: the rest go slot by slot below.
      if (!pending) {
        scatterRowsSync(bits(this.#store), cw, slots, bits(coded), { present });
        return;
      }
      const at = new Int32Array(slots.length), targets = new Int32Array(slots.length);
      let n = 0;
      for (let i = 0; i < slots.length; i++) {
        if (pending.has(slots[i])) continue;
        at[n] = i;
        targets[n++] = slots[i];
      }
      if (n > 0) scatterRowsSync(bits(this.#store), cw, targets.subarray(0, n), gatherRowsSync(bits(coded), cw, at.subarray(0, n)), { present });
    }
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i];
      if (present[s]) continue; // installed above, or meanwhile by a degraded read (and maybe updated since)
      if (c.role === 'data') {
        const w = this.#width;
        this.#store.set(coded.subarray(i * cw, (i + 1) * cw), s * w);
        if (states.length) this.#store.set(states[0].subarray(i * sw, (i + 1) * sw), s * w + c.dim);
      } else {
        this.#store.set(coded.subarray(i * cw, (i + 1) * cw), s * cw);
        states.forEach((st, j) => this.#replicas[j].set(st.subarray(i * sw, (i + 1) * sw), s * sw));
      }
      present[s] = 1;
      if (!pending) continue;
      // Deltas committed after the step we read at are not in what we read: apply them now.
      const later = (pending.get(s) ?? []).filter((d) => d.step > step);
      pending.delete(s);
      for (const d of later) this.#applyDelta(d, true);
    }
  }

  async #openStandby(o: StandbyOrder): Promise<void> {
    this.#closeStandby();
    integer(o.storeFloats, 'standby.storeFloats', 0, 2 ** 31 - 1);
    this.#reserve = o.storeFloats > 0 ? table(o.storeFloats).fill(0) : null;
    this.#rebuildWorker ??= startRebuildWorker();
    // Started now, not with the role a takeover gives: a thread's start-up would land in the failure's steps.
    startBackgroundReader();
    const conns = await Promise.all(o.servers.map((a) => Connection.connect(a, `server ${describeAddress(a)}`, o.timeoutMs)));
    o.servers.forEach((a, i) => this.#standby.set(describeAddress(a), conns[i]));
    if (o.code) {
      this.#standing = { order: o, conns, codec: createCodec(o.code.mode, o.code.k, o.code.r) };
      const tableSlots = Math.ceil(o.storeFloats / (o.code.dim + stateWidth(o.code.optimizer ?? 'rowwise-adagrad', o.code.dim)));
      // Only a warm-up: a failure here leaves the code to compile after a failure, nothing worse.
      if (conns.length > 0) {
        const started = performance.now();
        this.#warmReads = { rounds: 0, ms: 0, error: null };
        await warmReads(o.code, conns, tableSlots, this.#warmReads).catch((e: Error) => (this.#warmReads!.error = e.message));
        this.#warmReads.ms = performance.now() - started;
      }
      const started = performance.now();
      this.#rehearsal = { rounds: 0, ms: 0, error: null };
      // Bounded: a rehearsal stuck on an overloaded machine must not hold up the cluster's start.
      // Its rebuild thread is then replaced, so the real rebuild never queues behind it.
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        this.#rehearse(o.code, tableSlots).then(() => 'done' as const, (e: Error) => e),
        new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), REHEARSAL_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
      if (outcome instanceof Error) this.#rehearsal.error = outcome.message;
      if (outcome === 'late') {
        this.#rehearsal.error = `the rehearsal took longer than ${REHEARSAL_TIMEOUT_MS} ms`;
        this.#dropRebuildWorker();
        this.#rebuildWorker = startRebuildWorker();
      }
      this.#rehearsal.ms = performance.now() - started;
    }
  }

  /**
   * Rehearses taking over a lost data block, before any failure, on scratch servers of this
   * process (k data and r parity servers of a few thousand rows, on loopback): a stand-in
   * for one block serves pulls, prefetches and pushes by degraded reads while its rebuild runs on
   * this spare's own rebuild thread. The real takeover then runs code V8 has compiled already, on
   * both threads. Traced after a failure, a spare that had warmed only a data role spent ~65 ms of
   * CPU in V8's optimizing compiler and ran its first steps in the interpreter, all while training
   * waited on it.
   */
  async #rehearse(code: NonNullable<StandbyOrder['code']>, tableSlots: number): Promise<void> {
    const { k, r, dim } = code;
    const request = (server: ShardServer, op: number, w: Writer) => server.handle(op, new Reader(w.build()));
    let seed = 1;
    const random = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296;
    // Skewed slots, as embedding lookups are: most of a step's rows are hot ones.
    const batch = () => Int32Array.from(new Set(Array.from({ length: REHEARSAL.draws }, () => Math.floor(REHEARSAL.slots * random() ** 3))));
    // The rounds stop if the thread is replaced (a rehearsal given up on, see #openStandby).
    const worker = this.#rebuildWorker;
    for (let round = 0; round < REHEARSAL.rounds && worker && this.#rebuildWorker === worker; round++, this.#rehearsal!.rounds++) {
      const scratch = await Promise.all(Array.from({ length: k + r }, () => ShardServer.listen('127.0.0.1', 0)));
      const standIn = new ShardServer(this.server);
      try {
        const address = (s: ShardServer) => ({ host: '127.0.0.1', port: s.port });
        const config: ShardConfig = {
          role: 'data', index: 0, k, r, mode: code.mode, state: code.state, dim, optimizer: code.optimizer ?? 'rowwise-adagrad', lr: 0.01, eps: 1e-8,
          totalRows: REHEARSAL.slots * k, rowsPerTable: REHEARSAL.slots * k, seed: round + 1, committedStep: -1, parities: scratch.slice(k).map(address), timeoutMs: 5000,
        };
        await Promise.all(scratch.map((s, i) => request(s, Op.configure, new Writer().json({ ...config, role: i < k ? 'data' : 'parity', index: i < k ? i : i - k }))));
        const data = scratch.slice(0, k), parities = scratch.slice(k);
        let step = 0;
        // The trainer's side of a step: pull, prefetch of the next rows, prepare and stage, commit.
        let next = data.map(() => batch());
        const train = async (steps: number) => {
          const prefetches: Promise<unknown>[] = [];
          let failure: unknown = null;
          for (let i = 0; i < steps; i++, step++) {
            const slots = next, txn = step + 1;
            next = data.map(() => batch());
            await Promise.all(data.map((s, b) => request(s, Op.pull, new Writer().u32(step + 1).array(slots[b]))));
            // The next rows, asked for while this step computes: its pull may find them on their way.
            const replaced = data.indexOf(standIn);
            if (replaced >= 0) prefetches.push(Promise.resolve(request(standIn, Op.prefetch, new Writer().array(next[replaced]))).catch((e) => (failure ??= e)));
            await Promise.all([
              ...data.map((s, b) => request(s, Op.prepare, new Writer().u32(step + 1).u32(txn).array(slots[b]).array(new Float32Array(slots[b].length * dim).fill(1e-3)))),
              ...parities.map((p) => request(p, Op.stage, new Writer().u32(step + 1).u32(txn).array(Int32Array.from(data.keys())))),
            ]);
            await Promise.all([...data, ...parities].map((s) => request(s, Op.commit, new Writer().u32(step + 1).u32(txn))));
          }
          await Promise.all(prefetches);
          if (failure) throw failure;
        };
        await train(REHEARSAL.before);
        const lost = round % k, sources = Array.from({ length: k + r }, (_, b) => b).filter((b) => b !== lost).slice(0, k);
        standIn.#rebuildWorker = worker;
        const plan: RebuildPlan = { sources: sources.map((b) => ({ block: b, ...address(scratch[b]) })), rangeSlots: 64, pauseMs: 1, rehearsal: { tableSlots } };
        await request(standIn, Op.configure, new Writer().json({ ...config, index: lost, committedStep: step - 1, rebuild: plan }));
        data[lost] = standIn;
        const rebuilt = request(standIn, Op.rebuild, new Writer());
        await train(REHEARSAL.during);
        await rebuilt;
        await train(REHEARSAL.after);  // switched over: untouched rows are computed when first asked for
      } finally {
        standIn.#closeSources();
        standIn.#closePeers();
        for (const s of scratch) s.close();
      }
    }
  }

  /** Stops listening and closes the connections this server opened (scratch servers, tests). */
  close(): void {
    this.#closeSources();
    this.#closePeers();
    this.#closeStandby();
    this.#dropRebuildWorker();
    this.server.close();
    this.unix?.close();
  }

  #dropRebuildWorker(): void {
    void this.#rebuildWorker?.terminate();
    this.#rebuildWorker = null;
  }

  #closeStandby(): void {
    for (const conn of this.#standby.values()) conn.close();
    this.#standby.clear();
    this.#standing = null;
  }

  /**
   * A standby spare answers a pull that a data shard is late with (it may be dead): the rows
   * decoded from the other servers at the committed step the pull needs, as the shard's reply
   * would hold them (weights only). Whichever answer comes first serves the trainer.
   */
  async #hedgedPull(body: Reader): Promise<Buffer[]> {
    const need = body.u32() - 1, block = body.u32(), slots = body.i32s();
    const s = this.#standing;
    if (!s || this.#config) throw rangeError('hedged pull', 'a spare standing by for a protected cluster', this.#config ? 'a server with a role' : 'a spare without standby orders', true);
    const code = s.order.code!;
    integer(block, 'block', 0, code.k - 1);
    const coded = await decodeBlockRows(code, s.codec, block, slots, s.conns, need);
    const width = coded.length / Math.max(1, slots.length);
    if (code.state === 'encoded') {
      this.#hedgedRows = { need, block, slots, coded };
      this.#installHedged();  // the takeover came first: this server holds the block already
    }
    const weights = width === code.dim ? coded : f32words(gatherRowsSync(bits(coded), width, rangeSlots(0, slots.length), { cols: code.dim }));
    return new Writer().array(weights).parts;
  }

  /**
   * Installs a hedged pull's decoded rows when this server has taken over their block at the
   * committed step they were read at, and has applied no commit since: the step's push then
   * finds them present instead of decoding them again. The pull and the takeover (its configure)
   * race: whichever comes second installs.
   */
  #installHedged(): void {
    const h = this.#hedgedRows, c = this.#config;
    if (!h || !c || !this.#present) return;
    this.#hedgedRows = null;
    if (c.role === 'data' && h.block === c.index && h.need === c.committedStep && this.#committed === h.need && h.coded.length === h.slots.length * this.#coded) {
      this.#install(h.slots, h.need, h.coded, []);
    }
  }

  #closeSources(): void {
    for (const s of this.#sources) s.conn.close();
    this.#sources = [];
  }

  #rebuild(): Promise<Buffer> {
    const plan = this.#cfg.rebuild;
    if (!plan || !this.#present) throw rangeError('rebuild', 'a server configured with a rebuild plan', 'none', true);
    this.#rebuildDone ??= this.#runRebuild(plan);
    return this.#rebuildDone.then(() => new Writer().json(this.stats).build());
  }

  /** The rows are read and decoded on a background worker thread (rebuild-worker.ts); installed here. */
  async #runRebuild(plan: RebuildPlan): Promise<void> {
    const c = this.#cfg;
    const touched = await (this.#touchedLearned ?? this.#learnTouched());
    const job: RebuildJob = {
      role: c, mode: c.mode as RebuildJob['mode'], sources: plan.sources, slots: this.#slots, rangeSlots: plan.rangeSlots, pauseMs: plan.pauseMs, timeoutMs: c.timeoutMs, rehearsal: plan.rehearsal,
      // A snapshot: slots updated later are made present (decoded) before their update.
      touched: touched ? touched.slice() : null,
    };
    // The standby's thread, unless it failed to start (then a fresh one, started now).
    const ready = this.#rebuildWorker;
    this.#rebuildWorker = null;
    const worker = ready && ready.threadId >= 0 ? ready : startRebuildWorker();
    const onMessage = (m: RebuildMessage) => {
      if (m.kind === 'done') return;
      if (!this.#present) return;  // reconfigured meanwhile
      this.#install(m.slots ?? rangeSlots(m.start, m.count), m.step, m.coded, m.states);
      this.stats.ranges++;
      this.stats.rebuiltSlots += m.slots?.length ?? m.count;
      this.stats.retries += m.retries;
    };
    let onDone: (m: RebuildMessage) => void = () => undefined, onError: (e: Error) => void = () => undefined, onExit: (code: number) => void = () => undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        onDone = (m) => m.kind === 'done' && resolve();
        onError = reject;
        onExit = (code) => reject(new Error(`Expected the rebuild worker to finish but received exit code ${code}`));
        worker.on('message', onMessage).on('message', onDone).on('error', onError).on('exit', onExit);
        worker.postMessage(job);
      });
      // Degraded reads still under way finish before their connections close.
      while (this.#fetches.size > 0) await Promise.allSettled([...this.#fetches.values()]);
      // Switch-over: requests no longer touch the sources. Every slot is local now, or (with a
      // touched set) every absent slot holds its initial row, computed when first needed.
      if (touched) this.#initialAbsent = true;
      else this.#present = null;
      this.#fetchingBy = null;
      this.#pending.clear();
    } finally {
      this.#closeSources();
      worker.off('message', onMessage).off('message', onDone).off('error', onError).off('exit', onExit);
      // A rehearsal's thread (the spare's own) waits for the real job; the real job's is done.
      if (!plan.rehearsal || worker !== ready) void worker.terminate();
    }
  }
}
