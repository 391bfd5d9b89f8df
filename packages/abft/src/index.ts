// @kintsugi/abft: algorithm-based fault tolerance for GEMM, Linear and Conv2d layers and whole
// models — global (Huang–Abraham) and fused thread-level checksums, intensity-guided selection,
// detection with magnitude-scaled bounds, location and in-place correction, event reports.
export { protectedGemm, weightChecksums, deviceWeightChecksums, cudaIndex, globalCheck, schemes, EPS32, BOUND_SCALE, type Scheme, type Action, type AbftEvent, type ProtectionReport, type WeightChecksums, type ProtectedGemmOptions } from './gemm.js';
export { ProtectedLinear, ProtectedConv2d, ProtectedModel, protectModel, type ConvEvent, type LayerProtectionOptions, type ProtectModelOptions } from './layers.js';
export { machineBalance, cudaMachineBalance, arithmeticIntensity, intensityRule, timeSchemes, confirmedScheme, OVERTURN_MARGIN, type MachineBalance, type LayerDecision } from './select.js';
export { abftCommand } from './cli.js';
export { runOverhead, overheadMarkdown, overheadLayers, runCudaOverhead, cudaOverheadMarkdown, type OverheadRow, type CudaOverheadRow } from './bench.js';
export { verifyGemm, flipBit, type GemmVerification } from './verify.js';
