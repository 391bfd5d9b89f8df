// The coded serving system: KServe v2 model workers (HTTP/JSON and gRPC), the ParM frontend that
// codes, dispatches and decodes, worker supervision, and a Poisson load generator.
export { CodedFrontend, type CodedFrontendOptions, type Prediction, type FrontendStats } from './frontend.js';
export { startWorker, workerMain, modelMetadata, type WorkerOptions, type RunningWorker, type FaultOptions, type WorkerProtocol, type ListeningMessage } from './worker.js';
export { WorkerHandle, defaultWorkerEntry, type WorkerSpec, type ManagedWorkerSpec, type RemoteWorkerSpec, type HealthOptions, type WorkerState } from './process.js';
export { createWorkerClient, type WorkerClient, type InferCall } from './client.js';
export { fromPredict, linearModel, loadModelSpec, type ServingModel } from './model.js';
export { ServingError, GRPC_PREDICT_V2_PROTO, parseInferRequest, type V2Tensor, type V2InferRequest, type V2InferResponse, type V2ModelMetadata, type V2TensorMetadata } from './protocol.js';
export { inferenceService } from './grpc.js';
export { runPoissonLoad, httpSender, quantile, type LoadOptions, type LoadResult } from './loadgen.js';
export { runServingBench, benchMarkdown, type ServingBenchOptions, type ServingBenchRow } from './bench.js';
export { parseServeArgs } from './serve.js';
