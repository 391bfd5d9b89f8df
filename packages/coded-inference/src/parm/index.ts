// ParM parity models and the codes around them: summation / concatenation encoders with the
// subtraction decoder for r ≥ 1 parities, the Berrut approximate code, parity-model training,
// parity model files and degraded-mode evaluation.
export { ParityCode, checkGrid, concatEncode, concatGrid, concatQueryShape, parseGrid, defaultCoefficients, encoderNames, canvasNames, type CanvasName, type CodeSpec, type EncoderName } from './codes.js';
export { BerrutCode, LearnedDecoder, berrutWeights, berrutInterpolate, choleskySolve, chebyshevFirst, chebyshevSecond, approxiferPoints } from './berrut.js';
export { trainParityModel, parityModelLike, scaleHeadForCanvas, addReconstructionLoss, reconstructionAccuracy, type ParityTrainOptions, type ParityTrainResult, type ParityEpoch } from './train.js';
export { saveParityModel, loadParityModel, encodeParityModel, decodeParityModel, checkParityMetadata, servingModelFromFile, PARM_KEY, type ParityMetadata, type LoadedParityModel } from './files.js';
export { deployedOutputs, evaluateParm, evaluateBerrut, testGroups, combinations, type TestOutputs, type ParmResult, type BerrutResult } from './evaluate.js';
export { loadDatasets, inputSpec, gather, forwardAll, shiftImages, majorityClass, datasetNames, type DatasetName, type InputSpec } from './data.js';
export { parmCommand, parseTrainArgs, parseEvalArgs, parityFileName, UsageError } from './cli.js';
