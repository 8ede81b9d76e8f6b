/**
 * The values QMP messages are made of, as qemu's QObject model sees them.
 *
 * qemu keeps three kinds of number apart (int64, uint64, double), and the
 * difference is visible: `1.0` is not an integer argument, and `1.0` is
 * echoed back as `1`. Integers that fit a JavaScript safe integer are plain
 * `number`s; every other number is a {@linkcode QNum} that remembers its kind.
 *
 * @module
 */

/** A number that is not a safe int64: a large int64, a uint64 above int64, or a double. */
export class QNum {
  /** Makes a number of the given kind (`value` is a bigint for integers). */
  constructor(readonly kind: "int" | "uint" | "double", readonly value: bigint | number) {}

  /** The value as a JavaScript number (lossy beyond 2^53). */
  toNumber(): number {
    return Number(this.value);
  }
}

/** A JSON object as parsed from the wire: own, null-prototype members in arrival order. */
export interface JsonObject {
  /** A member, by name. */
  [key: string]: JsonValue;
}

/** Any value a QMP message can hold. */
export type JsonValue = null | boolean | number | string | QNum | JsonValue[] | JsonObject;

/** Whether `v` is a JSON object (not an array, not a {@linkcode QNum}). */
export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof QNum);
}

/** Makes an empty object that can hold any key, `__proto__` included. */
export function newJsonObject(): JsonObject {
  return Object.create(null) as JsonObject;
}

/** Whether `obj` has its own member `key`. */
export function hasMember(obj: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(obj, key);
}
