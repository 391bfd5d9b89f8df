// Running a module as a program: `node dist/serving/worker.js ...` starts the worker, while
// importing the same module only defines it.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Runs `main` with the command-line arguments when `moduleUrl` is the script node was started with. */
export function runIfMain(moduleUrl: string, name: string, main: (argv: string[]) => Promise<unknown>): void {
  let isMain = false;
  try {
    isMain = !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    isMain = false;
  }
  if (!isMain) return;
  main(process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`${name}: ${err.message}\n`);
    process.exit(2);
  });
}
