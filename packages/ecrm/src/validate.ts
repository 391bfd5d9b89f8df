// One message shape for every bad input, as the rest of Kintsugi uses:
// "Expected {expected} for {name} but received {actual}". TypeError for types, RangeError for values.
import { rangeError, typeError } from '@kintsugi/cuda-core/validate';

// The project's one validation module lives in cuda-core; ecrm adds `positive` and its errors.
export { describe, typeError, rangeError, integer, oneOf } from '@kintsugi/cuda-core/validate';

export function positive(value: unknown, name: string): number {
  if (typeof value !== 'number') throw typeError(name, 'a number', value);
  if (!Number.isFinite(value) || value <= 0) throw rangeError(name, 'a finite positive number', value);
  return value;
}

/** A server did not answer: its connection closed, it timed out, or it could not be reached. */
export class ShardUnavailableError extends Error {
  readonly code = 'ECRM_SHARD_UNAVAILABLE';
  constructor(readonly server: string, message: string) {
    super(message);
    this.name = 'ShardUnavailableError';
  }
}

/** A server answered with an error of its own (bad request, failed peer, failed rebuild). */
export class RemoteError extends Error {
  readonly code = 'ECRM_REMOTE_ERROR';
  constructor(readonly server: string, message: string) {
    super(`${server}: ${message}`);
    this.name = 'RemoteError';
  }
}
