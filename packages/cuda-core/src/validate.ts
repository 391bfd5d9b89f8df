// One validation module with one message shape, used by every public function of every package
// (exported as @kintsugi/cuda-core/validate):
// "Expected {expected} for {name} but received {actual}". TypeError for types, RangeError for
// values out of range; the addon checks again with the same shape.

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (ArrayBuffer.isView(value)) {
    const length = (value as { length?: number }).length ?? value.byteLength;
    return `a ${value.constructor.name} of length ${length}`;
  }
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') {
    const name = (value as object).constructor?.name;
    return name && name !== 'Object' ? `a ${name}` : 'an object';
  }
  return typeof value;
}

function message(name: string, expected: string, actual: unknown, rawActual: boolean): string {
  return `Expected ${expected} for ${name} but received ${rawActual ? String(actual) : describe(actual)}`;
}

export class KintsugiTypeError extends TypeError {
  readonly code = 'KINTSUGI_INVALID_TYPE';
}
export class KintsugiRangeError extends RangeError {
  readonly code = 'KINTSUGI_OUT_OF_RANGE';
}

export function typeError(name: string, expected: string, actual: unknown, rawActual = false): TypeError {
  return new KintsugiTypeError(message(name, expected, actual, rawActual));
}

export function rangeError(name: string, expected: string, actual: unknown, rawActual = false): RangeError {
  return new KintsugiRangeError(message(name, expected, actual, rawActual));
}

export function isInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value);
}

export function integer(value: unknown, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!isInteger(value)) throw typeError(name, 'an integer', value);
  if (value < min || value > max) throw rangeError(name, `an integer in [${min}, ${max}]`, value);
  return value;
}

export function finiteNumber(value: unknown, name: string, min = -Infinity, max = Infinity): number {
  if (typeof value !== 'number') throw typeError(name, 'a number', value);
  const bounded = min !== -Infinity || max !== Infinity;
  if (!Number.isFinite(value) || value < min || value > max) throw rangeError(name, bounded ? `a finite number in [${min}, ${max}]` : 'a finite number', value);
  return value;
}

export function boolean(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw typeError(name, 'a boolean', value);
  return value;
}

export function oneOf<T extends string>(value: unknown, name: string, options: readonly T[]): T {
  const expected = `one of ${options.map((o) => `'${o}'`).join(' | ')}`;
  if (typeof value !== 'string') throw typeError(name, expected, value);
  if (!options.includes(value as T)) throw rangeError(name, expected, value);
  return value as T;
}

export function plainObject(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value) || ArrayBuffer.isView(value)) {
    throw typeError(name, 'an options object', value);
  }
  return value as Record<string, unknown>;
}

// A pair like stride or padding: a number applies to both spatial dimensions.
export function pair(value: unknown, name: string, fallback: number, min: number): [number, number] {
  if (value === undefined) return [fallback, fallback];
  if (typeof value === 'number') {
    integer(value, name, min, 65535);
    return [value, value];
  }
  if (Array.isArray(value) && value.length === 2) {
    return [integer(value[0], `${name}[0]`, min, 65535), integer(value[1], `${name}[1]`, min, 65535)];
  }
  throw typeError(name, 'an integer or a pair of integers', value);
}

export function shapeArray(value: unknown, name: string): number[] {
  if (!Array.isArray(value)) throw typeError(name, 'an array of non-negative integers', value);
  if (value.length > 8) throw rangeError(name, 'at most 8 dimensions', value.length, true);
  value.forEach((d, i) => integer(d, `${name}[${i}]`, 0, 2 ** 31 - 1));
  return value.slice() as number[];
}
