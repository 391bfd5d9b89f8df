// Entry of a shard process: serve on a TCP port and print it. The trainer configures the role over
// the wire, so the same process can be a data shard, a parity shard or a spare.
import { join } from 'node:path';

import { ShardServer } from './shard.js';

const host = process.env.ECRM_HOST ?? '127.0.0.1';
const port = Number(process.env.ECRM_PORT ?? 0);
// A trainer that starts shards on its own host names a folder for their Unix sockets.
const dir = process.env.ECRM_SOCKET_DIR;
const shard = await ShardServer.listen(host, port, dir ? join(dir, `shard-${process.pid}.sock`) : undefined);
process.stdout.write(`ECRM_LISTENING ${shard.port}${shard.path ? ` ${shard.path}` : ''}\n`);
// A shard started by a local trainer dies with it (its stdin closes), so tests leave no orphans.
if (process.env.ECRM_EXIT_WITH_PARENT === '1') {
  process.stdin.on('close', () => process.exit(0));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
