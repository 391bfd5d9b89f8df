// One message shape for every bad input, as the rest of Kintsugi uses:
// "Expected {expected} for {name} but received {actual}". TypeError for types, RangeError for values.
import { KintsugiRangeError, KintsugiTypeError } from '@kintsugi/cuda-core';

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length?: number }).length ?? value.byteLength}`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'object') {
    const name = (value as object).constructor?.name;
    return name && name !== 'Object' ? `a ${name}` : 'an object';
  }
  return typeof value;
}

const text = (name: string, expected: string, actual: unknown, raw: boolean) =>
  `Expected ${expected} for ${name} but received ${raw ? String(actual) : describe(actual)}`;

export function typeError(name: string, expected: string, actual: unknown, raw = false): TypeError {
  return new KintsugiTypeError(text(name, expected, actual, raw));
}
export function rangeError(name: string, expected: string, actual: unknown, raw = false): RangeError {
  return new KintsugiRangeError(text(name, expected, actual, raw));
}

export function integer(value: unknown, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw typeError(name, 'an integer', value);
  if (value < min || value > max) throw rangeError(name, `an integer in [${min}, ${max}]`, value);
  return value;
}

export function positive(value: unknown, name: string): number {
  if (typeof value !== 'number') throw typeError(name, 'a number', value);
  if (!Number.isFinite(value) || value <= 0) throw rangeError(name, 'a finite positive number', value);
  return value;
}

export function oneOf<T extends string>(value: unknown, name: string, options: readonly T[]): T {
  const expected = `one of ${options.map((o) => `'${o}'`).join(' | ')}`;
  if (typeof value !== 'string') throw typeError(name, expected, value);
  if (!options.includes(value as T)) throw rangeError(name, expected, value);
  return value as T;
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
