// Commands this package adds to the `kintsugi` CLI (the dispatcher in @kintsugi/cuda-core finds
// them by name): `kintsugi serve`, `kintsugi loadgen` and `kintsugi parm`.
export { serveCommand } from './serving/serve.js';
export { loadgenCommand } from './serving/bench.js';
export { parmCommand } from './parm/cli.js';
