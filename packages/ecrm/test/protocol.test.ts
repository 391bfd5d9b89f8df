import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { Connection, encodeFrame, FrameDecoder, Op, serve, Writer } from '../src/protocol.js';
import { RemoteError, ShardUnavailableError } from '../src/validate.js';

describe('framing and transport', () => {
  it('reassembles frames split at every byte and joined in one chunk', () => {
    const frames = [encodeFrame(3, 7, Buffer.from('hello')), encodeFrame(4, 8, Buffer.alloc(0)), encodeFrame(5, 9, Buffer.alloc(70_000, 1))];
    const wire = Buffer.concat(frames);
    for (const split of [1, 13, wire.length]) {
      const got: [number, number, number][] = [];
      const d = new FrameDecoder((op, id, p) => got.push([op, id, p.length]));
      for (let i = 0; i < wire.length; i += split) d.push(wire.subarray(i, i + split));
      expect(got).toEqual([[3, 7, 5], [4, 8, 0], [5, 9, 70_000]]);
    }
    expect(() => new FrameDecoder(() => undefined).push(Buffer.from([1, 0, 0, 0, 0]))).toThrow(/Expected a frame length/);
  });

  it.each(['tcp', 'unix'] as const)('carries typed payloads, replies and remote errors over %s', async (transport) => {
    const dir = mkdtempSync(join(tmpdir(), 'ecrm-test-'));
    const path = transport === 'unix' ? join(dir, 'test.sock') : undefined;
    const server = await serve((op, body) => {
      if (op === Op.status) throw new Error('Expected nothing for status but received something');
      const a = body.i32s(), b = body.f32s();
      return new Writer().u32(a.length).array(b.map((x) => x * 2)).build();
    }, '127.0.0.1', 0, path);
    const port = path ? 0 : (server.address() as net.AddressInfo).port;
    const c = await Connection.connect({ host: '127.0.0.1', port, path }, 'test server');
    const r = await c.request(Op.pull, new Writer().array(Int32Array.of(1, 2, 3)).array(Float32Array.of(0.5, 4)).build());
    expect(r.u32()).toBe(3);
    expect([...r.f32s()]).toEqual([1, 8]);
    // A payload far larger than a socket buffer arrives whole.
    const big = await c.request(Op.pull, new Writer().array(new Int32Array(0)).array(new Float32Array(1 << 20).fill(1.5)).build());
    big.u32();
    expect(big.f32s().every((x) => x === 3)).toBe(true);
    await expect(c.request(Op.status)).rejects.toThrow(RemoteError);
    c.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([3, 8192, 300_000])('reuses one buffer for frames when asked, from transient chunks of %i bytes', (split) => {
    const frames = [encodeFrame(3, 7, Buffer.alloc(70_000, 2)), encodeFrame(4, 8, Buffer.alloc(50_000, 3)), encodeFrame(5, 9, Buffer.alloc(80_000, 4)), encodeFrame(6, 10, Buffer.alloc(1, 5))];
    const wire = Buffer.concat(frames);
    const got: { buffer: ArrayBufferLike; ok: boolean; aligned: boolean; id: number }[] = [];
    const d = new FrameDecoder((op, id, p) => got.push({ id, buffer: p.buffer, ok: p.length > 0 && p.every((b) => b === op - 1), aligned: p.byteOffset % 4 === 0 }), true);
    // One read buffer, overwritten after every push (as a socket's onread buffer is).
    const read = Buffer.alloc(split);
    for (let i = 0; i < wire.length; i += split) {
      const n = wire.copy(read, 0, i, i + split);
      d.push(read.subarray(0, n));
      read.fill(0xee);
    }
    expect(got.map((g) => [g.id, g.ok && g.aligned])).toEqual([[7, true], [8, true], [9, true], [10, true]]);
    // The second frame fits the first's buffer; the third needs a larger one.
    expect(got[1].buffer).toBe(got[0].buffer);
    expect(got[2].buffer).not.toBe(got[0].buffer);
    expect(() => new FrameDecoder(() => undefined, true).push(Buffer.from([1, 0, 0, 0, 0]))).toThrow(/Expected a frame length/);
  });

  it('gives a pooled reply back once the socket has written it, and carries it intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ecrm-test-'));
    const path = join(dir, 'pool.sock');
    const pool: Buffer[] = [];
    let released = 0;
    const server = await serve(() => {
      const copy = pool.pop() ?? Buffer.alloc(8 + 4 * (1 << 19));
      copy.writeUInt32LE(1, 0);
      copy.writeUInt32LE(1 << 19, 4);
      new Float32Array(copy.buffer, copy.byteOffset + 8, 1 << 19).fill(released + 0.5);
      return { parts: [copy], release: () => { released++; pool.push(copy); } };
    }, '127.0.0.1', 0, path);
    const c = await Connection.connect({ host: '127.0.0.1', port: 0, path }, 'pool server', 5000, true);
    for (let i = 0; i < 3; i++) {
      const r = await c.request(Op.readRange);
      expect(r.u32()).toBe(1);
      expect(r.f32sView().every((x) => x === i + 0.5)).toBe(true);
    }
    await expect.poll(() => released, { timeout: 2000 }).toBe(3);
    expect(pool).toHaveLength(1);  // one buffer served all three replies
    c.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('handles one-way frames in order without replying, even when their handler throws', async () => {
    const seen: string[] = [];
    const server = await serve((op, body) => {
      const v = body.u32();
      seen.push(`${op}:${v}`);
      if (v === 13) throw new Error('unlucky');
      return new Writer().u32(v * 2).build();
    });
    const c = await Connection.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }, 'one-way server');
    try {
      await c.send(Op.delta, new Writer().u32(1).build());
      await c.send(Op.delta, new Writer().u32(13).build());
      // A reply to either one-way frame would be taken for this request's (or refused as unknown).
      const r = await c.request(Op.status, new Writer().u32(21).build());
      expect(r.u32()).toBe(42);
      expect(seen).toEqual([`${Op.delta}:1`, `${Op.delta}:13`, `${Op.status}:21`]);
      const late = await c.request(Op.status, new Writer().u32(5).build(), 1000);
      expect(late.u32()).toBe(10);
    } finally {
      c.close();
      server.close();
    }
    await expect(c.send(Op.delta, new Writer().u32(2).build())).rejects.toThrow(ShardUnavailableError);
  });

  it('turns a silent server into a timeout and a dead one into an error, never a hang', async () => {
    const silent = net.createServer(() => undefined).listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    const c = await Connection.connect({ host: '127.0.0.1', port: (silent.address() as net.AddressInfo).port }, 'silent shard', 200);
    const t0 = Date.now();
    await expect(c.request(Op.pull)).rejects.toThrow(/Expected a reply from silent shard to pull within 200 ms but received none/);
    expect(Date.now() - t0).toBeLessThan(2000);
    c.close();
    const port = (silent.address() as net.AddressInfo).port;
    silent.close();
    await new Promise((r) => setTimeout(r, 50));
    await expect(Connection.connect({ host: '127.0.0.1', port }, 'gone shard', 1000)).rejects.toThrow(ShardUnavailableError);
  });
});

describe('a parity server\'s stage request', () => {
  const parityConfig = {
    role: 'parity', index: 0, k: 2, r: 1, mode: 'xor', state: 'encoded', dim: 4, optimizer: 'rowwise-adagrad', lr: 0.05, eps: 1e-8,
    totalRows: 16, rowsPerTable: 16, seed: 1, committedStep: -1, parities: [], timeoutMs: 2000,
  };
  // A data shard's delta for `rows` slots of coded width 5 (4 weights + 1 row-wise Adagrad state).
  const delta = (step: number, txn: number, from: number, slots: number[], bytes = slots.length * 5 * 4) =>
    new Writer().u32(step + 1).u32(txn).u32(from).array(Int32Array.from(slots)).array(new Uint8Array(bytes).fill(from + 1)).array(new Float32Array(0)).build();
  const stage = (step: number, txn: number, from: number[]) => new Writer().u32(step + 1).u32(txn).array(Int32Array.from(from)).build();

  it('is answered once every named delta is staged, in either order, and fails on an abort or a bad delta', async () => {
    const { ShardServer } = await import('../src/shard.js');
    const shard = await ShardServer.listen();
    const port = shard.port;
    const trainer = await Connection.connect({ host: '127.0.0.1', port }, 'parity 0');
    const data = await Connection.connect({ host: '127.0.0.1', port }, 'data shard');
    try {
      await trainer.request(Op.configure, new Writer().json(parityConfig).build());
      // Deltas first, then the stage request: answered at once.
      await data.send(Op.delta, delta(0, 1, 0, [1, 2]));
      await data.send(Op.delta, delta(0, 1, 1, [3]));
      await trainer.request(Op.stage, stage(0, 1, [0, 1]));
      await trainer.request(Op.commit, new Writer().u32(1).u32(1).build());
      // The stage request first: it waits for the second delta.
      let answered = false;
      const waiting = trainer.request(Op.stage, stage(1, 2, [0, 1])).then(() => (answered = true));
      await data.send(Op.delta, delta(1, 2, 1, [0]));
      await new Promise((r) => setTimeout(r, 50));
      expect(answered).toBe(false);
      await data.send(Op.delta, delta(1, 2, 0, [5]));
      await waiting;
      await trainer.request(Op.commit, new Writer().u32(2).u32(2).build());
      // A shard that never sends its delta: the trainer's abort ends the wait with a clear error.
      const orphan = trainer.request(Op.stage, stage(2, 3, [0, 1]));
      await data.send(Op.delta, delta(2, 3, 0, [7]));
      await trainer.request(Op.abort, new Writer().u32(3).build());
      await expect(orphan).rejects.toThrow(/Expected the deltas of step 2 to be staged but step 2 was aborted/);
      // A delta of the wrong size fails the stage request, naming the shard and the step.
      await data.send(Op.delta, delta(3, 4, 1, [2], 7));
      await expect(trainer.request(Op.stage, stage(3, 4, [1]))).rejects.toThrow(/the delta of data shard 1 for step 3: Expected 20 bytes for delta but received 7/);
      await expect(trainer.request(Op.stage, stage(3, 5, [2]))).rejects.toThrow(/Expected an integer in \[0, 1\] for data shard but received 2/);
    } finally {
      trainer.close();
      data.close();
      shard.server.close();
    }
  });

  it('a one-way commit it cannot apply fails every later request but a status probe', async () => {
    const { ShardServer } = await import('../src/shard.js');
    const shard = await ShardServer.listen();
    const trainer = await Connection.connect({ host: '127.0.0.1', port: shard.port }, 'parity 0');
    try {
      await trainer.request(Op.configure, new Writer().json(parityConfig).build());
      await trainer.send(Op.commit, new Writer().u32(1).build());  // no transaction id: it cannot be applied
      await expect(trainer.request(Op.stage, stage(1, 2, []))).rejects.toThrow(/Expected this server to apply every commit but one failed: /);
      await expect(trainer.request(Op.read, new Writer().u32(0).u32(0).array(Int32Array.of(1)).build())).rejects.toThrow(/apply every commit/);
      expect((await trainer.request(Op.status)).json<{ pid: number }>().pid).toBe(process.pid);
    } finally {
      trainer.close();
      shard.server.close();
    }
  });
});

describe('a data shard configured to be restored', () => {
  it('refuses row requests until its checkpoint is restored, then serves the checkpoint\'s rows', async () => {
    const { ShardServer } = await import('../src/shard.js');
    const config = {
      role: 'data', index: 0, k: 1, r: 0, mode: 'none', state: 'encoded', dim: 4, optimizer: 'rowwise-adagrad', lr: 0.05, eps: 1e-8,
      totalRows: 32, rowsPerTable: 32, seed: 3, committedStep: -1, parities: [], timeoutMs: 2000,
    };
    const dir = mkdtempSync(join(tmpdir(), 'ecrm-restore-'));
    const [a, b] = await Promise.all([ShardServer.listen(), ShardServer.listen()]);
    const ca = await Connection.connect({ host: '127.0.0.1', port: a.port }, 'shard a');
    const cb = await Connection.connect({ host: '127.0.0.1', port: b.port }, 'shard b');
    const pull = (c: Connection) => c.request(Op.pull, new Writer().u32(1).array(Int32Array.of(0, 5, 31)).build()).then((r) => r.f32s());
    try {
      await ca.request(Op.configure, new Writer().json(config).build());
      await ca.request(Op.push, new Writer().u32(1).array(Int32Array.of(5)).array(Float32Array.of(1, 2, 3, 4)).build());
      const path = join(dir, 'shard-0.bin');
      await ca.request(Op.checkpoint, new Writer().json({ path }).build());
      await cb.request(Op.configure, new Writer().json({ ...config, restoring: true }).build());
      await expect(pull(cb)).rejects.toThrow(/Expected a shard whose checkpoint has been restored \(send restore first\) for request but received a shard configured to be restored/);
      await cb.request(Op.restore, new Writer().json({ path }).build());
      expect(Array.from(await pull(cb))).toEqual(Array.from(await pull(ca)));
    } finally {
      ca.close();
      cb.close();
      a.server.close();
      b.server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('shard server requests outside their role', () => {
  it('a hedged pull to a server that is not a standing-by spare, and touched slots it keeps no record of, are clear errors', async () => {
    const { ShardServer } = await import('../src/shard.js');
    const shard = await ShardServer.listen();
    const c = await Connection.connect({ host: '127.0.0.1', port: shard.port }, 'shard');
    try {
      await expect(c.request(Op.hedgedPull, new Writer().u32(0).u32(0).array(Int32Array.of(1)).build())).rejects.toThrow(/Expected a spare standing by for a protected cluster for hedged pull but received a spare without standby orders/);
      await expect(c.request(Op.touched, new Writer().u32(0).build())).rejects.toThrow(/Expected a block this server keeps a complete record of for touched slots but received block 0/);
    } finally {
      c.close();
      shard.server.close();
    }
  });
});

/**
 * k = 2 data and r = 1 parity servers of 300 slots a block (xor, encoded state) and a spare, all
 * in this process, configured; `order` is the spare's standby order for them (not yet sent).
 */
async function codedServers(seed: number) {
  const { ShardServer } = await import('../dist/shard.js');
  const k = 2, r = 1, dim = 4, rowsPerTable = 300;
  const servers = await Promise.all(Array.from({ length: k + r }, () => ShardServer.listen()));
  const address = (s: { port: number }) => ({ host: '127.0.0.1', port: s.port });
  const conns = await Promise.all(servers.map((s, i) => Connection.connect(address(s), `server ${i}`)));
  const spare = await ShardServer.listen();
  const c = await Connection.connect(address(spare), 'spare');
  const config = {
    k, r, mode: 'xor', state: 'encoded', dim, optimizer: 'rowwise-adagrad', lr: 0.01, eps: 1e-8,
    totalRows: rowsPerTable * k, rowsPerTable, seed, committedStep: -1, parities: servers.slice(k).map(address), timeoutMs: 5000,
  };
  await Promise.all(conns.map((conn, i) => conn.request(Op.configure, new Writer().json({ ...config, role: i < k ? 'data' : 'parity', index: i < k ? i : i - k }).build())));
  const order = { servers: servers.map(address), timeoutMs: 5000, storeFloats: rowsPerTable * (dim + 1), code: { mode: 'xor', k, r, state: 'encoded', dim } };
  const close = () => {
    c.close();
    spare.close();
    for (const conn of conns) conn.close();
    for (const s of servers) s.close();
  };
  return { k, rowsPerTable, servers, address, conns, spare, c, config, order, close };
}

describe('a standby spare', () => {
  it('rehearses a takeover on scratch servers before any failure, and keeps its rebuild thread for the real one', async () => {
    // The compiled server (built by the global setup): its rebuild thread loads dist/rebuild-worker.js.
    const { ShardServer } = await import('../dist/shard.js');
    const codes = [
      { mode: 'xor', k: 2, r: 1, state: 'encoded' }, { mode: 'rs', k: 3, r: 2, state: 'encoded' },
      { mode: 'xor', k: 2, r: 1, state: 'replicated' }, { mode: 'sum', k: 3, r: 1, state: 'encoded', optimizer: 'adagrad' },
    ];
    for (const code of codes) {
      const spare = await ShardServer.listen();
      const c = await Connection.connect({ host: '127.0.0.1', port: spare.port }, 'spare');
      try {
        const order = { servers: [], timeoutMs: 2000, storeFloats: 0, code: { ...code, dim: 4 } };
        await c.request(Op.standby, new Writer().json(order).build());
        const status = (await c.request(Op.status)).json<{ rehearsal: { rounds: number; ms: number; error: string | null }; rebuildThreadReady: boolean }>();
        expect(status.rehearsal).toMatchObject({ rounds: 3, error: null });
        expect(status.rehearsal.ms).toBeGreaterThan(0);
        expect(status.rebuildThreadReady).toBe(true);
      } finally {
        c.close();
        spare.close();
      }
    }
  });

  it("installs a hedged pull's decoded rows when it takes over their block, whichever comes first", async () => {
    const { READ_FULL } = await import('../dist/shard.js');
    const { servers, address, conns, spare, c, config, order, close } = await codedServers(5);
    try {
      await c.request(Op.standby, new Writer().json(order).build());
      const slots = Int32Array.of(3, 17, 42, 299);
      // The pull is hedged to the spare, and block 0's takeover arrives in the same read: the
      // spare takes the role while the hedge's reads are out, and installs the rows when they come.
      const plan = { sources: [{ block: 1, ...address(servers[1]) }, { block: 2, ...address(servers[2]) }], rangeSlots: 64, pauseMs: 0 };
      const raw = net.connect(spare.port, '127.0.0.1');
      await new Promise((resolve) => raw.once('connect', resolve));
      const replies: number[] = [];
      const decoder = new FrameDecoder((op) => replies.push(op));
      raw.on('data', (chunk) => decoder.push(chunk));
      raw.write(Buffer.concat([
        encodeFrame(Op.hedgedPull, 1, new Writer().u32(0).u32(0).array(slots).build()),
        encodeFrame(Op.configure, 2, new Writer().json({ ...config, role: 'data', index: 0, rebuild: plan }).build()),
      ]));
      for (let i = 0; i < 500 && replies.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      raw.destroy();
      expect(replies).toEqual([Op.reply, Op.reply]);
      const status = (await c.request(Op.status)).json<{ present: number; stats: { degradedReads: number } }>();
      expect(status.present).toBe(slots.length);
      const read = (conn: Connection) => conn.request(Op.read, new Writer().u32(READ_FULL).u32(0).array(slots).build()).then((reply) => Buffer.from(reply.buf));
      expect((await read(c)).equals(await read(conns[0]))).toBe(true);
      expect(status.stats.degradedReads).toBe(0);  // present: no decode again
    } finally {
      close();
    }
  });

  it('decodes a slot once: a pull waits for the degraded read a prefetch started, and a repeated slot is read once', async () => {
    const { READ_FULL } = await import('../dist/shard.js');
    const { servers, address, conns, spare, c, config, order, close } = await codedServers(7);
    try {
      await c.request(Op.standby, new Writer().json(order).build());
      // The takeover, then, as soon as it is answered, a prefetch and a pull in one write: the pull
      // asks again for two slots the prefetch is decoding (or has decoded) and for a new one, twice.
      const plan = { sources: [{ block: 1, ...address(servers[1]) }, { block: 2, ...address(servers[2]) }], rangeSlots: 64, pauseMs: 0 };
      const raw = net.connect(spare.port, '127.0.0.1');
      await new Promise((resolve) => raw.once('connect', resolve));
      const replies: number[] = [];
      const decoder = new FrameDecoder((op, id) => {
        replies.push(op);
        if (id === 1) {
          raw.write(Buffer.concat([
            encodeFrame(Op.prefetch, 2, new Writer().array(Int32Array.of(3, 17, 42)).build()),
            encodeFrame(Op.pull, 3, new Writer().u32(0).array(Int32Array.of(17, 42, 99, 99)).build()),
          ]));
        }
      });
      raw.on('data', (chunk) => decoder.push(chunk));
      raw.write(encodeFrame(Op.configure, 1, new Writer().json({ ...config, role: 'data', index: 0, rebuild: plan }).build()));
      for (let i = 0; i < 500 && replies.length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      raw.destroy();
      expect(replies).toEqual([Op.reply, Op.reply, Op.reply]);
      const status = (await c.request(Op.status)).json<{ present: number; stats: { degradedReads: number; degradedSlots: number } }>();
      expect(status.stats).toMatchObject({ degradedReads: 2, degradedSlots: 4 });
      expect(status.present).toBe(4);
      const slots = Int32Array.of(3, 17, 42, 99);
      const read = (conn: Connection) => conn.request(Op.read, new Writer().u32(READ_FULL).u32(0).array(slots).build()).then((reply) => Buffer.from(reply.buf));
      expect((await read(c)).equals(await read(conns[0]))).toBe(true);
    } finally {
      close();
    }
  });

  it("warms the servers' side of a takeover's reads before any failure, leaving their rows as they were", async () => {
    const { READ_FULL, READ_CODED } = await import('../dist/shard.js');
    const { k, rowsPerTable, conns, c, order, close } = await codedServers(3);
    try {
      const slots = Int32Array.from({ length: rowsPerTable }, (_, s) => s);
      const snapshot = () => Promise.all(conns.map((conn, i) => conn.request(Op.read, new Writer().u32(i < k ? READ_FULL : READ_CODED).u32(0).array(slots).build()).then((reply) => Buffer.from(reply.buf))));
      const before = await snapshot();
      await c.request(Op.standby, new Writer().json(order).build());
      const status = (await c.request(Op.status)).json<{ warmReads: { rounds: number; ms: number; error: string | null } }>();
      expect(status.warmReads).toMatchObject({ rounds: 40, error: null });
      expect(status.warmReads.ms).toBeGreaterThan(0);
      const after = await snapshot();
      after.forEach((b, i) => expect(b.equals(before[i])).toBe(true));
    } finally {
      close();
    }
  });
});

describe('background reads (a rebuild\'s, served by a source\'s idle-priority thread)', () => {
  it('give the rows and step of a foreground read, and are read again when a commit lands meanwhile', async () => {
    const { READ_CODED, READ_BACKGROUND } = await import('../dist/stripe.js');
    const { rowsPerTable, conns, close } = await codedServers(5);
    const data = conns[0];
    const slots = Int32Array.of(7, 0, 299, 7, 150, 3);
    const read = (flags: number) => data.request(Op.read, new Writer().u32(flags).u32(0).array(slots).build()).then((r) => ({ step: r.u32() - 1, rows: Array.from(r.f32s()) }));
    const range = (flags: number) => data.request(Op.readRange, new Writer().u32(flags).u32(0).u32(10).u32(rowsPerTable - 10).build()).then((r) => ({ step: r.u32() - 1, rows: Array.from(r.f32s()) }));
    try {
      const before = await read(READ_CODED);
      expect(before.step).toBe(-1);
      expect(await read(READ_CODED | READ_BACKGROUND)).toEqual(before);
      for (const conn of conns.slice(1)) expect(await conn.request(Op.readRange, new Writer().u32(READ_CODED | READ_BACKGROUND).u32(0).u32(0).u32(rowsPerTable).build()).then((r) => r.u32())).toBe(0);
      expect(await range(READ_CODED | READ_BACKGROUND)).toEqual(await range(READ_CODED));
      // A push to the slots: prepared, then the background read and the commit back to back. The
      // commit is applied while the thread gathers, so the read must come back at the new step
      // with the new rows (read again on the main thread), never the old rows under the new step.
      const grads = Float32Array.from({ length: 3 * 4 }, (_, i) => (i % 5) - 2);
      await data.request(Op.prepare, new Writer().u32(1).u32(1).array(Int32Array.of(7, 150, 299)).array(grads).build());
      data.cork();
      const during = read(READ_CODED | READ_BACKGROUND);
      void data.send(Op.commit, new Writer().u32(1).u32(1).build());
      data.uncork();
      const after = await during;
      expect(after.step).toBe(0);
      expect(after).toEqual(await read(READ_CODED));
      expect(after.rows).not.toEqual(before.rows);
      const stats = (await data.request(Op.status)).json<{ stats: { backgroundReads: number; backgroundRereads: number } }>().stats;
      expect(stats.backgroundReads).toBeGreaterThanOrEqual(2);
      expect(stats.backgroundRereads).toBeGreaterThanOrEqual(1);
    } finally {
      close();
    }
  });
});
