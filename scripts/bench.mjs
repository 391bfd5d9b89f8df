#!/usr/bin/env node
// The bench suite: runs the native bench executable (native/bench, built with the addon) with the
// arguments passed through, e.g. `pnpm bench --quick` or `pnpm bench --filter resnet18`, and saves
// its JSON and markdown as bench/results/<host>-<YYYY-MM-DD>{,-quick,-partial}.{json,md}.
// Options: see `pnpm bench --help` and bench/README.md. Not part of the tests.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const exe = process.env.KINTSUGI_BENCH_EXE ? resolve(process.env.KINTSUGI_BENCH_EXE) : resolve(root, 'native/build/kintsugi_bench');
if (!existsSync(exe)) {
  console.error(`${exe} is missing: run "npx -y pnpm@10.34.9 install" (or "pnpm build") first.`);
  process.exit(1);
}

const args = process.argv.slice(2).filter((a) => a !== '--');
const has = (...flags) => args.some((a) => flags.includes(a));

// Every row carries the commit; "-dirty" when native/ differs from it (the kernels measured are
// then not exactly that commit's).
function git(...a) {
  return spawnSync('git', a, { cwd: root, encoding: 'utf8' });
}
let commit = process.env.KINTSUGI_COMMIT;
if (!commit) {
  const head = git('rev-parse', '--short', 'HEAD');
  commit = head.status === 0 ? head.stdout.trim() : 'unknown';
  if (head.status === 0 && git('diff', '--quiet', 'HEAD', '--', 'native').status === 1) commit += '-dirty';
}

const extra = [];
let saved = null;
// --list / --help print and exit; an explicit --json / --md means the caller chose where results go.
if (!has('--list', '--help', '-h', '--json', '--md')) {
  const date = new Date().toISOString().slice(0, 10);
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '_') || 'host';
  const partial = has('--filter', '--threads', '--reps', '--batch', '--hot', '--no-peer', '--no-peers');
  const suffix = has('--quick') ? '-quick' : partial ? '-partial' : '';
  const dir = resolve(root, 'bench/results');
  mkdirSync(dir, { recursive: true });
  saved = resolve(dir, `${host}-${date}${suffix}`);
  extra.push('--json', `${saved}.json`, '--md', `${saved}.md`);
}

const r = spawnSync(exe, ['--commit', commit, ...args, ...extra], { cwd: root, stdio: 'inherit' });
if (r.error) {
  console.error(`could not run ${exe}: ${r.error.message}`);
  process.exit(1);
}
if (saved && existsSync(`${saved}.json`)) {
  console.log(`\nresults: ${relative(root, saved)}.json and .md`);
}
process.exit(r.status ?? 1);
