/**
 * Whether a process on this host is dying or gone, read from /proc (Linux).
 *
 * A killed process closes its sockets only after the kernel has torn down its memory: 20-35 ms
 * for a shard process of ~100 MB on a busy 2-core VM, against 0.4-2 ms for /proc to show a
 * pending SIGKILL, the exiting flag or a zombie. A trainer that started the shard process can so
 * tell a dead shard from a slow one long before its connection closes. Only dying counts: a
 * stopped (SIGSTOP) or descheduled process is alive, and a slow-but-alive shard must never be
 * declared dead by this test. Elsewhere than Linux the answer is always false (the sockets tell).
 */
import { readFileSync } from 'node:fs';

/** PF_EXITING in /proc/<pid>/stat's flags: set as the process starts to exit. */
const PF_EXITING = 0x4;
/** SIGKILL (9) in the pending-signal masks of /proc/<pid>/status. */
const SIGKILL_BIT = 1n << 8n;

export function processDying(pid: number): boolean {
  if (process.platform !== 'linux' || !Number.isInteger(pid) || pid <= 0) return false;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT';  // reaped: gone
  }
  // Fields after the command name (in parentheses, which may itself hold spaces): state, ppid,
  // pgrp, session, tty_nr, tpgid, flags, ...
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return true;
  if ((Number(fields[6]) & PF_EXITING) !== 0) return true;
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT';
  }
  // A SIGKILL sent but not yet acted on (the process not scheduled since).
  for (const key of ['SigPnd', 'ShdPnd']) {
    const m = new RegExp(`^${key}:\\s+([0-9a-f]+)`, 'm').exec(status);
    if (m && (BigInt(`0x${m[1]}`) & SIGKILL_BIT) !== 0n) return true;
  }
  return false;
}
