// The project's one validation module ("Expected {expected} for {name} but received {actual}",
// TypeError for types, RangeError for ranges) lives in cuda-core; abft uses it under these names.
export {
  describe, typeError, rangeError, integer, oneOf, plainObject as options, boolean as bool, finiteNumber as finite,
} from '@kintsugi/cuda-core/validate';
