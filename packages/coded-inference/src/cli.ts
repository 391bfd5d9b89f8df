// Commands this package adds to the `kintsugi` CLI (the dispatcher in @kintsugi/cuda-core finds
// them by name): `kintsugi serve` and `kintsugi loadgen`.
export { serveCommand } from './serving/serve.js';
export { loadgenCommand } from './serving/bench.js';
