// Shared by the serving tests: worker processes run the compiled dist/serving/worker.js, so the
// package is rebuilt first when any source file is newer than it (a lock keeps parallel test
// files from compiling at once).
import { execFileSync, fork } from 'node:child_process';
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterEach, beforeAll } from 'vitest';

import { CodedFrontend, loadModelSpec, type CodedFrontendOptions, type ListeningMessage, type ServingModel } from '../../src/serving/index.js';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const workerEntry = join(pkg, 'dist/serving/worker.js');

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function built(): boolean {
  try {
    return statSync(workerEntry).mtimeMs >= newestSource(join(pkg, 'src'));
  } catch {
    return false;
  }
}

export async function ensureBuilt(): Promise<void> {
  const lock = join(pkg, 'dist.build-lock');
  for (let waited = 0; !built(); waited += 200) {
    try {
      mkdirSync(lock);
    } catch {
      if (waited > 60_000) throw new Error(`Expected the build lock ${lock} to be released but it was held for 60 s`);
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    try {
      if (!built()) execFileSync(process.execPath, [join(pkg, '../../node_modules/typescript/bin/tsc'), '-p', join(pkg, 'tsconfig.json')], { stdio: 'inherit' });
    } finally {
      rmdirSync(lock);
    }
  }
}

/** Forks a worker process with the given CLI arguments; resolves with its listening message. */
export function spawnWorker(args: string[]): Promise<{ msg: ListeningMessage; kill: () => void; exited: Promise<number | null> }> {
  const child = fork(workerEntry, args, { execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return new Promise((resolvePromise, reject) => {
    child.once('message', (msg: ListeningMessage) => resolvePromise({ msg, kill: () => child.kill('SIGKILL'), exited }));
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}: ${stderr}`)));
  });
}

/** Runs a worker CLI to its exit; resolves with its exit code and stderr. */
export function runWorkerCli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = fork(workerEntry, args, { execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((r) => child.once('exit', (code) => r({ code, stderr })));
}

export async function post(url: string, body: unknown | string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

export async function get(url: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/**
 * For a test file of frontends over `spec` workers: builds the package first, loads the model as
 * the oracle, and closes every frontend `start` made after each test. `defaults` apply to each one.
 */
export function frontendFixture(spec: string, defaults: Partial<CodedFrontendOptions> = {}) {
  const fixture = {
    model: null as unknown as ServingModel,
    open: [] as CodedFrontend[],
    async start(options: Partial<CodedFrontendOptions> & Pick<CodedFrontendOptions, 'k' | 'data'>, listen = true): Promise<CodedFrontend> {
      const f = new CodedFrontend({ workerEntry, health: { intervalMs: 250, timeoutMs: 1000, failures: 3 }, ...defaults, ...options });
      fixture.open.push(f);
      return f.start({ listen });
    },
  };
  beforeAll(async () => {
    await ensureBuilt();
    fixture.model = await loadModelSpec(spec);
  });
  afterEach(async () => {
    await Promise.all(fixture.open.map((f) => f.close()));
    fixture.open = [];
  });
  return fixture;
}
