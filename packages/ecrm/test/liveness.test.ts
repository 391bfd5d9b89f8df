import { spawn } from 'node:child_process';
import { once } from 'node:events';

import { describe, expect, it } from 'vitest';
import { processDying } from '../src/liveness.js';

const linux = process.platform === 'linux';

/** A child node process holding ~100 MB (as a shard does), that says when it is ready. */
async function bigChild() {
  const child = spawn(process.execPath, ['-e', `
    const a = new Float32Array(25e6); for (let i = 0; i < a.length; i += 1024) a[i] = i;
    process.stdout.write('ready\\n'); setInterval(() => a[0]++, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await once(child.stdout!, 'data');
  return child;
}

describe.runIf(linux)('processDying (local shard liveness from /proc)', () => {
  it('is false for live, stopped and invalid processes', async () => {
    expect(processDying(process.pid)).toBe(false);
    for (const pid of [0, -1, 1.5, Number.NaN]) expect(processDying(pid)).toBe(false);
    const child = await bigChild();
    const exited = once(child, 'exit');
    try {
      expect(processDying(child.pid!)).toBe(false);
      // Stopped is slow, not dead: such a shard must never be declared dead by this test.
      child.kill('SIGSTOP');
      await new Promise((r) => setTimeout(r, 50));
      expect(processDying(child.pid!)).toBe(false);
      child.kill('SIGCONT');
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
  });

  it('sees a killed process as dying before its pipes close, and after it is reaped', async () => {
    const child = await bigChild();
    const exited = once(child, 'exit');
    const closed = once(child.stdout!, 'close');
    let closedAt = Infinity;
    void closed.then(() => (closedAt = performance.now()));
    const t0 = performance.now();
    child.kill('SIGKILL');
    let seenAt = Infinity;
    while (performance.now() - t0 < 5000) {
      if (processDying(child.pid!)) {
        seenAt = performance.now();
        break;
      }
      await new Promise((r) => setImmediate(r));
    }
    expect(seenAt).toBeLessThan(t0 + 5000);
    await closed;
    // The kernel closes a killed process's files only once its memory is torn down.
    expect(seenAt).toBeLessThanOrEqual(closedAt);
    await exited;
    expect(processDying(child.pid!)).toBe(true);  // reaped: no such process
  });
});
