// @kintsugi/ecrm: erasure-coded embedding tables for DLRM training (ECRM/ECRec). Shards are real
// processes behind a binary TCP protocol; parity follows every update by difference propagation
// under a per-step two-phase commit; a lost shard is rebuilt on a spare while training goes on.
export { XorParityGroup, createCodec, codeModes, type CodeMode, type ParityCodec } from './codec.js';
export {
  SyntheticCriteo, spreadRank, parseCriteoTsv, readCriteoTsv, toCriteoTsv, FileBatches, sliceBatch, auc, hash2,
  DENSE_FEATURES, SPARSE_FEATURES, type Batch, type BatchSource, type SyntheticOptions,
} from './data.js';
export { DLRM, DLRM_ARCHITECTURES, DenseAdagrad, lookupRows, type DlrmArchitecture, type DlrmOptions, type Lookup } from './model.js';
export { adagradRow, stateWidth, embeddingOptimizers, type EmbeddingOptimizer } from './optim.js';
export { Connection, FrameDecoder, Reader, Writer, Op, serve, encodeFrame, MAX_FRAME } from './protocol.js';
export { ShardServer, initialWeight, type ShardConfig, type Address, type RebuildPlan } from './shard.js';
export { EmbeddingCluster, ShardLostError, SHARD_MAIN, type ClusterOptions, type ClusterEvent, type Protection, type Health } from './cluster.js';
export { ShardUnavailableError, RemoteError } from './validate.js';
export { trainDlrm, randomFailure, modeLabel, type TrainOptions, type TrainResult, type StepRecord, type Failure, type FtMode } from './train.js';
export { runComparison, summarize, comparisonTable, comparisonSummary, throughputChart, type ComparisonRow, type ComparisonOptions } from './report.js';
export { lineChart, type Series } from './svg.js';
export { ecrmCommand } from './cli.js';
