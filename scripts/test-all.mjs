#!/usr/bin/env node
// Runs every test runner (native ctest, then vitest over all packages and test/) and ends with
// one plain line "N passed, N failed" totalling them, so a run that executed nothing shows.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
let passed = 0, failed = 0;
const problems = [];

// Streams the runner's output as it comes (long runs show progress) and keeps stdout to parse.
function run(cmd, args) {
  console.log(`\n$ ${cmd} ${args.join(' ')}`);
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      process.stdout.write(chunk);
    });
    child.stderr.on('data', (chunk) => process.stderr.write(chunk));
    child.on('error', (err) => resolvePromise({ status: null, stdout, error: err }));
    child.on('close', (status) => resolvePromise({ status, stdout }));
  });
}

// Native unit tests.
const buildDir = join(root, 'native', 'build');
if (existsSync(join(buildDir, 'CTestTestfile.cmake'))) {
  const r = await run('ctest', ['--test-dir', buildDir, '--output-on-failure']);
  const m = /(\d+)% tests passed, (\d+) tests failed out of (\d+)/.exec(r.stdout ?? '');
  if (m) {
    const total = Number(m[3]), bad = Number(m[2]);
    passed += total - bad;
    failed += bad;
  } else {
    failed += 1;
    problems.push('ctest printed no summary');
  }
} else {
  failed += 1;
  problems.push('native/build has no ctest files: run the install first');
}

// Every vitest project (packages/* and test/) in one run.
const outDir = mkdtempSync(join(tmpdir(), 'kintsugi-vitest-'));
const report = join(outDir, 'report.json');
const r = await run(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`]);
if (existsSync(report)) {
  const json = JSON.parse(readFileSync(report, 'utf8'));
  passed += json.numPassedTests;
  failed += json.numFailedTests;
  if (json.numTotalTests === 0) problems.push('vitest ran no tests');
  if (r.status !== 0 && json.numFailedTests === 0) {
    failed += 1;
    problems.push(`vitest exited with ${r.status} (suite or unhandled errors)`);
  }
} else {
  failed += 1;
  problems.push('vitest wrote no report');
}
rmSync(outDir, { recursive: true, force: true });

for (const p of problems) console.log(`problem: ${p}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
