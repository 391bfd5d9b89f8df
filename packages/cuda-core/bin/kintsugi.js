#!/usr/bin/env node
// The `kintsugi` command; the implementation is compiled TypeScript in dist/.
import('../dist/cli.js').then((cli) => cli.main(process.argv.slice(2))).then(
  (code) => { process.exitCode = code ?? 0; },
  (err) => { console.error(err instanceof Error ? err.message : err); process.exitCode = 1; },
);
