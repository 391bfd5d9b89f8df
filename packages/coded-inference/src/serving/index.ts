// The coded serving system: KServe v2 model workers (HTTP/JSON and gRPC), the ParM frontend that
// codes, dispatches and decodes (or replicates and hedges, for the baselines), worker supervision,
// a Poisson load generator, background load, and the comparison bench with its reports.
export { CodedFrontend, type CodedFrontendOptions, type Prediction, type FrontendStats, type Redundancy, type RedundancyConfig } from './frontend.js';
export { startWorker, workerMain, modelMetadata, type WorkerOptions, type RunningWorker, type FaultOptions, type WorkerProtocol, type ListeningMessage } from './worker.js';
export { WorkerHandle, defaultWorkerEntry, type WorkerSpec, type ManagedWorkerSpec, type RemoteWorkerSpec, type HealthOptions, type WorkerState } from './process.js';
export { createWorkerClient, type WorkerClient, type InferCall } from './client.js';
export { fromPredict, linearModel, loadModelSpec, type ServingModel } from './model.js';
export { ServingError, GRPC_PREDICT_V2_PROTO, parseInferRequest, type V2Tensor, type V2InferRequest, type V2InferResponse, type V2ModelMetadata, type V2TensorMetadata } from './protocol.js';
export { inferenceService } from './grpc.js';
export { runPoissonLoad, httpSender, quantile, summarize, type LoadOptions, type LoadResult, type LoadSummary, type QueryRecord, type SendResult } from './loadgen.js';
export {
  runComparison, combineRuns, parseApproach, parseLoadgenArgs, comparisonDefaults, compareApproaches,
  type Approach, type ApproachKind, type Comparison, type ComparisonOptions, type ComparisonRow, type ComparisonRun, type LoadgenArgs,
} from './bench.js';
export { ccdfPoints, comparisonCsv, comparisonJson, comparisonMarkdown, tailSvg, writeComparison, type CcdfPoint } from './report.js';
export { startCpuLoad, type CpuLoad, type CpuLoadOptions } from './background.js';
export { parseServeArgs } from './serve.js';
