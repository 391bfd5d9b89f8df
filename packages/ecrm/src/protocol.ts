// The wire protocol between the trainer, the embedding shards and the parity servers: length-
// prefixed binary frames over TCP (so a shard can live on another host), one request/reply pair per
// id, many requests in flight per connection. Every request has a deadline: a dead or wedged peer
// turns into a ShardUnavailableError, never a hang.
import net from 'node:net';
import { RemoteError, ShardUnavailableError } from './validate.js';

export const Op = {
  reply: 0,
  configure: 1,
  pull: 2,
  prepare: 3,
  delta: 4,
  commit: 5,
  abort: 6,
  read: 7,
  checkpoint: 8,
  restore: 9,
  status: 10,
  rebuild: 11,
  push: 12,
  peers: 13,
  crash: 14,
  shutdown: 15,
  readRange: 16,
  standby: 17,
  prefetch: 18,
  touched: 19,
  hedgedPull: 20,
  stage: 21,
  error: 255,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];
const opNames = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));
export const opName = (op: number) => opNames.get(op) ?? `op ${op}`;

// [u32 length of the rest][u8 op][u32 id][payload]
const HEADER = 9;
/** The id of a one-way frame (Connection.send): it gets no reply. Requests' ids start at 1. */
export const ONE_WAY = 0;
/** A reused-frame connection's read buffer: a Unix socket hands over ~200 KB at most per read. */
const READ_BUFFER = 256 * 1024;
/** Larger frames are refused: a corrupt length must not make a peer allocate gigabytes. */
export const MAX_FRAME = 512 * 1024 * 1024;

export function encodeFrame(op: number, id: number, payload: Buffer): Buffer {
  const head = Buffer.allocUnsafe(HEADER);
  head.writeUInt32LE(payload.length + 5, 0);
  head.writeUInt8(op, 4);
  head.writeUInt32LE(id, 5);
  return Buffer.concat([head, payload]);
}

/**
 * Writes a frame as header + payload in one writev (no copy of the payload into a joined frame).
 * `written` runs once the socket is done with the payload (handed to the kernel, or failed).
 */
export function writeFrame(socket: net.Socket, op: number, id: number, payload: Buffer | Buffer[], written?: (error?: Error | null) => void): void {
  const parts = Array.isArray(payload) ? payload : [payload];
  const length = parts.reduce((n, p) => n + p.length, 0);
  const head = Buffer.allocUnsafe(HEADER);
  head.writeUInt32LE(length + 5, 0);
  head.writeUInt8(op, 4);
  head.writeUInt32LE(id, 5);
  if (length < 4096) {
    socket.write(Buffer.concat([head, ...parts]), written);
    return;
  }
  socket.cork();
  socket.write(head);
  parts.forEach((p, i) => socket.write(p, i === parts.length - 1 ? written : undefined));
  socket.uncork();
}

/**
 * A reply in buffers its handler reuses (a pool of range copies): `release` gives them back once
 * the socket has written them out, or at once when the reply cannot be sent.
 */
export interface PooledReply {
  parts: Buffer[];
  release: () => void;
}

/**
 * Splits a byte stream into frames; chunks are joined once per frame, not per chunk. With `reuse`,
 * every frame is assembled as its bytes arrive in one buffer kept from frame to frame (a megabyte
 * range per frame would otherwise fault in fresh pages each time), and chunks are copied at once,
 * so they may be transient (a socket's reused read buffer): for a consumer done with a frame before
 * the next one arrives, such as a reader with one request in flight.
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #length = 0;
  // Reuse mode: the frame being assembled (3 bytes of padding, then the frame) and its progress.
  #scratch: Buffer | null = null;
  #head = Buffer.alloc(4);
  #filled = 0;
  #total = 0;

  constructor(readonly onFrame: (op: number, id: number, payload: Buffer) => void, readonly reuse = false) {}

  push(chunk: Buffer): void {
    if (this.reuse) {
      this.#assemble(chunk);
      return;
    }
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    for (;;) {
      if (this.#length < 4) return;
      const head = this.#chunks[0].length >= 4 ? this.#chunks[0] : this.#join();
      const size = frameSize(head);
      if (this.#length < size + 4) return;
      const all = this.#join();
      const frame = all.subarray(0, size + 4);
      const rest = all.subarray(size + 4);
      this.#chunks = rest.length ? [rest] : [];
      this.#length = rest.length;
      this.onFrame(frame.readUInt8(4), frame.readUInt32LE(5), frame.subarray(HEADER));
    }
  }

  #join(): Buffer {
    if (this.#chunks.length > 1) {
      // Joined with 3 bytes in front, so the payload (after the 9-byte header) starts 4-byte
      // aligned and a Reader can view large float arrays in place.
      const all = Buffer.allocUnsafeSlow(this.#length + 3);
      let at = 3;
      for (const c of this.#chunks) {
        c.copy(all, at);
        at += c.length;
      }
      this.#chunks = [all.subarray(3)];
    }
    return this.#chunks[0];
  }

  #assemble(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#total === 0) {
        // The length prefix, possibly split across chunks.
        const n = Math.min(4 - this.#filled, chunk.length - at);
        chunk.copy(this.#head, this.#filled, at, at + n);
        at += n;
        this.#filled += n;
        if (this.#filled < 4) return;
        this.#total = frameSize(this.#head) + 4;
        // The payload lands 4-byte aligned (see #join), in a buffer kept while it is large enough.
        if (!this.#scratch || this.#scratch.length < this.#total + 3) this.#scratch = Buffer.allocUnsafeSlow(this.#total + 3);
        this.#head.copy(this.#scratch, 3);
      }
      const n = Math.min(this.#total - this.#filled, chunk.length - at);
      chunk.copy(this.#scratch!, 3 + this.#filled, at, at + n);
      at += n;
      this.#filled += n;
      if (this.#filled < this.#total) return;
      const frame = this.#scratch!.subarray(3, 3 + this.#total);
      this.#filled = 0;
      this.#total = 0;
      this.onFrame(frame.readUInt8(4), frame.readUInt32LE(5), frame.subarray(HEADER));
    }
  }
}

function frameSize(head: Buffer): number {
  const size = head.readUInt32LE(0);
  if (size < 5 || size > MAX_FRAME) throw new RangeError(`Expected a frame length in [5, ${MAX_FRAME}] for frame but received ${size}`);
  return size;
}

/** Builds a payload from typed fields; arrays carry their element count. */
export class Writer {
  readonly parts: Buffer[] = [];
  u32(v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(v >>> 0, 0);
    this.parts.push(b);
    return this;
  }
  f64(v: number): this {
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleLE(v, 0);
    this.parts.push(b);
    return this;
  }
  array(a: Int32Array | Float32Array | Uint8Array): this {
    this.u32(a.length);
    this.parts.push(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    return this;
  }
  json(value: unknown): this {
    const b = Buffer.from(JSON.stringify(value));
    this.u32(b.length);
    this.parts.push(b);
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Reads a Writer's payload. Arrays are copied so they are aligned and outlive the frame. */
export class Reader {
  #at = 0;
  constructor(readonly buf: Buffer) {}
  #need(n: number, what: string): void {
    if (this.#at + n > this.buf.length) throw new RangeError(`Expected ${n} more bytes for ${what} but received ${this.buf.length - this.#at}`);
  }
  u32(): number {
    this.#need(4, 'u32');
    const v = this.buf.readUInt32LE(this.#at);
    this.#at += 4;
    return v;
  }
  f64(): number {
    this.#need(8, 'f64');
    const v = this.buf.readDoubleLE(this.#at);
    this.#at += 8;
    return v;
  }
  #bytes(count: number, size: number, what: string): ArrayBuffer {
    this.#need(count * size, what);
    const out = new ArrayBuffer(count * size);
    new Uint8Array(out).set(this.buf.subarray(this.#at, this.#at + count * size));
    this.#at += count * size;
    return out;
  }
  i32s(): Int32Array {
    const n = this.u32();
    return new Int32Array(this.#bytes(n, 4, 'Int32Array'));
  }
  f32s(): Float32Array {
    const n = this.u32();
    return new Float32Array(this.#bytes(n, 4, 'Float32Array'));
  }
  /**
   * Like f32s, but a view into the frame when it is 4-byte aligned (no copy; the frame's memory
   * is not reused): for large arrays read once, such as the rebuild's ranges.
   */
  f32sView(): Float32Array {
    const n = this.u32();
    this.#need(n * 4, 'Float32Array');
    const offset = this.buf.byteOffset + this.#at;
    if (offset % 4 !== 0) {
      this.#at -= 4;
      return this.f32s();
    }
    this.#at += n * 4;
    return new Float32Array(this.buf.buffer, offset, n);
  }
  u8s(): Uint8Array {
    const n = this.u32();
    return new Uint8Array(this.#bytes(n, 1, 'Uint8Array'));
  }
  json<T = unknown>(): T {
    const n = this.u32();
    this.#need(n, 'JSON');
    const v = JSON.parse(this.buf.toString('utf8', this.#at, this.#at + n)) as T;
    this.#at += n;
    return v;
  }
}

interface Pending {
  resolve: (r: Reader) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  op: number;
}

/** Where a server listens: TCP, and optionally a Unix socket that peers on its host use instead. */
export interface Address {
  host: string;
  port: number;
  /** A Unix socket of the same server: no TCP stack per message, one copy per byte moved. */
  path?: string;
}

/** host:port, or the socket path, for labels and errors. */
export function describeAddress(a: Address): string {
  return a.path ?? `${a.host}:${a.port}`;
}

/** The client side of one connection (TCP or Unix socket) to a server. */
export class Connection {
  #socket: net.Socket;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed: Error | null = null;
  #onClose: (() => void)[] = [];

  /** Names the peer in errors (a spare's connection is renamed when the spare takes a role). */
  label: string;

  /** With reused frames: where the socket's own read buffer is handed (see connect). */
  #feed: ((chunk: Buffer) => void) | null = null;

  private constructor(socket: net.Socket, label: string, readonly timeoutMs: number, reuseFrames: boolean) {
    this.label = label;
    this.#socket = socket;
    socket.setNoDelay(true);
    const decoder = new FrameDecoder((op, id, payload) => {
      const p = this.#pending.get(id);
      if (!p) return; // a reply after its deadline: the caller has moved on
      this.#pending.delete(id);
      clearTimeout(p.timer);
      if (op === Op.error) p.reject(new RemoteError(this.label, payload.toString('utf8')));
      else p.resolve(new Reader(payload));
    }, reuseFrames);
    const feed = (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (e) {
        socket.destroy(e as Error);
      }
    };
    if (reuseFrames) this.#feed = feed;
    else socket.on('data', feed);
    socket.on('error', () => undefined); // 'close' follows and carries the failure
    socket.on('close', () => this.#fail(`a closed connection`));
  }

  /**
   * `label` names the peer in errors; it should say where it is (role and host:port).
   * `reuseFrames`: replies share one buffer (see FrameDecoder), so each must be used up before the
   * next request's reply arrives: for a caller with one request in flight that reads it at once.
   */
  static connect(address: Address, label: string, timeoutMs = 10_000, reuseFrames = false): Promise<Connection> {
    return new Promise((resolve, reject) => {
      // With reused frames the socket also reads into one buffer of its own (no allocation per
      // read; the decoder copies each chunk out at once). Nothing arrives before 'connect'.
      let conn: Connection | null = null;
      const onread = reuseFrames
        ? { buffer: Buffer.allocUnsafe(READ_BUFFER), callback: (n: number, buf: Uint8Array) => (conn!.#feed!(Buffer.from(buf.buffer, buf.byteOffset, n)), true) }
        : undefined;
      const socket = address.path ? net.connect({ path: address.path, onread }) : net.connect({ host: address.host, port: address.port, onread });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ShardUnavailableError(label, `Expected a connection to ${label} within ${timeoutMs} ms but received none`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        conn = new Connection(socket, label, timeoutMs, reuseFrames);
        resolve(conn);
      });
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(new ShardUnavailableError(label, `Expected a connection to ${label} but received ${e.message}`));
      });
    });
  }

  get closed(): boolean {
    return this.#closed !== null;
  }

  /** Requests between cork() and uncork() go out in one write. */
  cork(): void {
    this.#socket.cork();
  }
  uncork(): void {
    this.#socket.uncork();
  }

  onClose(fn: () => void): void {
    if (this.#closed) fn();
    else this.#onClose.push(fn);
  }

  request(op: number, payload: Buffer = Buffer.alloc(0), timeoutMs = this.timeoutMs): Promise<Reader> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId;
    this.#nextId = (this.#nextId % 0xfffffffe) + 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ShardUnavailableError(this.label, `Expected a reply from ${this.label} to ${opName(op)} within ${timeoutMs} ms but received none`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer, op });
      writeFrame(this.#socket, op, id, payload);
    });
  }

  /**
   * A one-way frame: the server handles it and sends nothing back (its errors surface through a
   * later request that depends on it). Resolves once the payload is handed to the kernel, from
   * where it reaches the peer even if this process dies next.
   */
  send(op: number, payload: Buffer): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      const failed = () => reject(this.#closed ?? new ShardUnavailableError(this.label, `Expected to send ${opName(op)} to ${this.label} but its connection failed`));
      writeFrame(this.#socket, op, ONE_WAY, payload, (error) => (error ? failed() : resolve()));
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  #fail(what: string): void {
    if (this.#closed) return;
    this.#closed = new ShardUnavailableError(this.label, `Expected a reply from ${this.label} but received ${what}`);
    for (const [, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new ShardUnavailableError(this.label, `Expected a reply from ${this.label} to ${opName(p.op)} but received ${what}`));
    }
    this.#pending.clear();
    for (const fn of this.#onClose.splice(0)) fn();
  }
}

export type Reply = Buffer | Buffer[] | PooledReply | void;
export type Handler = (op: number, body: Reader) => Reply | Promise<Reply>;

/**
 * Serves frames: each request is dispatched in arrival order (so a commit followed by a pull on one
 * connection is seen in that order) and answered when its handler settles.
 */
export function serve(handler: Handler, host = '127.0.0.1', port = 0, path?: string): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);  // a no-op on Unix sockets
    const reply = (op: number, id: number, payload: Buffer | Buffer[] | PooledReply) => {
      const pooled = !Buffer.isBuffer(payload) && !Array.isArray(payload) ? payload : null;
      if (socket.destroyed) pooled?.release();
      else if (pooled) writeFrame(socket, op, id, pooled.parts, pooled.release);
      else writeFrame(socket, op, id, payload as Buffer | Buffer[]);
    };
    const decoder = new FrameDecoder((op, id, payload) => {
      let result: ReturnType<Handler>;
      try {
        result = handler(op, new Reader(payload));
      } catch (e) {
        if (id !== ONE_WAY) reply(Op.error, id, Buffer.from((e as Error).message));
        return;
      }
      if (id === ONE_WAY) {
        Promise.resolve(result).catch(() => undefined);
        return;
      }
      Promise.resolve(result).then(
        (r) => reply(Op.reply, id, r ?? Buffer.alloc(0)),
        (e: Error) => reply(Op.error, id, Buffer.from(e?.message ?? String(e))),
      );
    });
    socket.on('data', (chunk) => {
      // Replies to the requests of one read (a commit and the pull behind it) go out in one
      // write: corked until the handlers that finish at once have answered.
      socket.cork();
      setImmediate(() => socket.uncork());
      try {
        decoder.push(chunk);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    if (path) server.listen(path, () => resolve(server));
    else server.listen(port, host, () => resolve(server));
  });
}
