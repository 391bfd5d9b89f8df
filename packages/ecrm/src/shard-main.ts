// Entry of a shard process: serve on a TCP port and print it. The trainer configures the role over
// the wire, so the same process can be a data shard, a parity shard or a spare.
import { ShardServer } from './shard.js';

const host = process.env.ECRM_HOST ?? '127.0.0.1';
const port = Number(process.env.ECRM_PORT ?? 0);
const shard = await ShardServer.listen(host, port);
process.stdout.write(`ECRM_LISTENING ${shard.port}\n`);
// A shard started by a local trainer dies with it (its stdin closes), so tests leave no orphans.
if (process.env.ECRM_EXIT_WITH_PARENT === '1') {
  process.stdin.on('close', () => process.exit(0));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
