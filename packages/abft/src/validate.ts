// Argument checks with the project's one message shape: "Expected {expected} for {name} but
// received {actual}" (TypeError for types, RangeError for ranges), typed as cuda-core's errors.
import { KintsugiRangeError, KintsugiTypeError } from '@kintsugi/cuda-core';

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length: number }).length}`;
  if (typeof value === 'object') {
    const name = (value as object).constructor?.name;
    return name && name !== 'Object' ? `a ${name}` : 'an object';
  }
  return typeof value;
}

export function typeError(name: string, expected: string, actual: unknown, raw = false): TypeError {
  return new KintsugiTypeError(`Expected ${expected} for ${name} but received ${raw ? String(actual) : describe(actual)}`);
}
export function rangeError(name: string, expected: string, actual: unknown, raw = false): RangeError {
  return new KintsugiRangeError(`Expected ${expected} for ${name} but received ${raw ? String(actual) : describe(actual)}`);
}
export function integer(value: unknown, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw typeError(name, 'an integer', value);
  if (value < min || value > max) throw rangeError(name, `an integer in [${min}, ${max}]`, value);
  return value;
}
export function finite(value: unknown, name: string, min = -Infinity, max = Infinity): number {
  if (typeof value !== 'number') throw typeError(name, 'a number', value);
  if (!Number.isFinite(value) || value < min || value > max) throw rangeError(name, `a finite number in [${min}, ${max}]`, value);
  return value;
}
export function oneOf<T extends string>(value: unknown, name: string, options: readonly T[]): T {
  const expected = `one of ${options.map((o) => `'${o}'`).join(' | ')}`;
  if (typeof value !== 'string') throw typeError(name, expected, value);
  if (!options.includes(value as T)) throw rangeError(name, expected, value);
  return value as T;
}
export function options(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value) || ArrayBuffer.isView(value)) throw typeError(name, 'an options object', value);
  return value as Record<string, unknown>;
}
export function bool(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw typeError(name, 'a boolean', value);
  return value;
}
