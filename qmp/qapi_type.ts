/**
 * A small declarative type language for QMP command arguments, and the
 * input visitor that checks arguments against it with qemu's exact errors
 * (`qapi/qobject-input-visitor.c`).
 *
 * Members are written QAPI-style, an optional one with a leading `*`:
 *
 * ```ts ignore
 * const args = q.struct("block-job-cancel", { device: q.str, "*force": q.bool });
 * ```
 *
 * The visitor walks the declared members in declaration order (a missing or
 * mistyped one fails at once), then reports a left-over member as
 * unexpected, picking the one qemu's GLib hash table would list first.
 *
 * @module
 */

import { GHashTableModel } from "./_ghash_table.ts";
import { genericError } from "./error.ts";
import { hasMember, isJsonObject, type JsonObject, type JsonValue, QNum } from "./json_value.ts";
import { qdictKeys } from "./qdict_order.ts";

/** Integer widths of QAPI's builtin types. */
export type QapiIntName =
  | "int"
  | "int8"
  | "int16"
  | "int32"
  | "int64"
  | "uint8"
  | "uint16"
  | "uint32"
  | "uint64"
  | "size";

/** One member of a struct. */
export interface QapiMember {
  /** The member's name on the wire. */
  readonly name: string;
  /** Its type. */
  readonly type: QapiType;
  /** Whether it may be left out. */
  readonly optional: boolean;
  /** The value a handler sees when an optional member is left out (none by default). */
  readonly default?: unknown;
}

/** A QAPI type. */
export type QapiType =
  | { readonly kind: "str" }
  | { readonly kind: "bool" }
  | { readonly kind: "int"; readonly name: QapiIntName }
  | { readonly kind: "number" }
  | { readonly kind: "any" }
  | { readonly kind: "null" }
  | { readonly kind: "enum"; readonly name: string; readonly values: readonly string[] }
  | { readonly kind: "array"; readonly element: QapiType }
  | QapiStruct;

/** A struct type (also the type of a command's arguments). */
export interface QapiStruct {
  /** Always `"struct"`. */
  readonly kind: "struct";
  /** The struct's QAPI name (a command's name for its arguments). */
  readonly name: string;
  /** Its members, in declaration order. */
  readonly members: readonly QapiMember[];
}

/** A member given with a default: `{ type: q.int, default: 0 }`. */
export interface QapiMemberSpec {
  /** The member's type. */
  type: QapiType;
  /** Value seen by the handler when the member is absent. */
  default: unknown;
}

const int = (name: QapiIntName): QapiType => ({ kind: "int", name });

/** The shape of {@linkcode q}: the QAPI builtin types and the type constructors. */
export interface QapiBuilders {
  /** `str`: a JSON string. */
  readonly str: QapiType;
  /** `bool`: `true` or `false`. */
  readonly bool: QapiType;
  /** `int`: a signed 64-bit integer. */
  readonly int: QapiType;
  /** `int8`: a signed 8-bit integer. */
  readonly int8: QapiType;
  /** `int16`: a signed 16-bit integer. */
  readonly int16: QapiType;
  /** `int32`: a signed 32-bit integer. */
  readonly int32: QapiType;
  /** `int64`: a signed 64-bit integer. */
  readonly int64: QapiType;
  /** `uint8`: an unsigned 8-bit integer. */
  readonly uint8: QapiType;
  /** `uint16`: an unsigned 16-bit integer. */
  readonly uint16: QapiType;
  /** `uint32`: an unsigned 32-bit integer. */
  readonly uint32: QapiType;
  /** `uint64`: an unsigned 64-bit integer. */
  readonly uint64: QapiType;
  /** `size`: an unsigned 64-bit byte count. */
  readonly size: QapiType;
  /** `number`: any JSON number. */
  readonly number: QapiType;
  /** `any`: any JSON value. */
  readonly any: QapiType;
  /** `null`: JSON `null` only. */
  readonly null: QapiType;
  /** An enum with its values. */
  enumOf(name: string, values: readonly string[]): QapiType;
  /** A list. */
  array(element: QapiType): QapiType;
  /** A struct; keys starting with `*` are optional. */
  struct(name: string, members: Record<string, QapiType | QapiMemberSpec>): QapiStruct;
}

/** Builders of {@linkcode QapiType}s. */
export const q: QapiBuilders = {
  str: { kind: "str" } as QapiType,
  bool: { kind: "bool" } as QapiType,
  int: int("int"),
  int8: int("int8"),
  int16: int("int16"),
  int32: int("int32"),
  int64: int("int64"),
  uint8: int("uint8"),
  uint16: int("uint16"),
  uint32: int("uint32"),
  uint64: int("uint64"),
  size: int("size"),
  number: { kind: "number" } as QapiType,
  any: { kind: "any" } as QapiType,
  null: { kind: "null" } as QapiType,
  /** An enum with its values. */
  enumOf(name: string, values: readonly string[]): QapiType {
    return { kind: "enum", name, values };
  },
  /** A list. */
  array(element: QapiType): QapiType {
    return { kind: "array", element };
  },
  /** A struct; keys starting with `*` are optional. */
  struct(name: string, members: Record<string, QapiType | QapiMemberSpec>): QapiStruct {
    return {
      kind: "struct",
      name,
      members: Object.entries(members).map(([key, spec]) => {
        const optional = key.startsWith("*");
        const member = { name: optional ? key.slice(1) : key, optional };
        return "kind" in spec
          ? { ...member, type: spec }
          : { ...member, type: spec.type, default: spec.default };
      }),
    };
  },
};

/** A path step: a member of a struct, or an element of a list. */
type Step = string | number;

/** qemu's `full_name()`: `a.b`, `enable[0]`, `a[1].b`. */
function fullName(path: readonly Step[]): string {
  let s = "";
  for (const step of path) s += typeof step === "number" ? `[${step}]` : `.${step}`;
  if (s.startsWith(".")) s = s.slice(1);
  return s === "" ? "<anonymous>" : s;
}

/** The bare name qemu uses in enum and range errors: the member name, or `null` in a list. */
function bareName(path: readonly Step[]): string {
  const last = path[path.length - 1];
  return typeof last === "string" ? last : "null";
}

const RANGES: Record<string, [bigint, bigint, string]> = {
  int8: [-128n, 127n, "int8_t"],
  int16: [-32768n, 32767n, "int16_t"],
  int32: [-(2n ** 31n), 2n ** 31n - 1n, "int32_t"],
  uint8: [0n, 255n, "uint8_t"],
  uint16: [0n, 65535n, "uint16_t"],
  uint32: [0n, 2n ** 32n - 1n, "uint32_t"],
};

function typeError(path: readonly Step[], expected: string): never {
  throw genericError(`Invalid parameter type for '${fullName(path)}', expected: ${expected}`);
}

/** An int64 from a parsed value, or undefined (qemu's `qnum_get_try_int`). */
function asInt64(v: JsonValue): bigint | undefined {
  if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
  if (v instanceof QNum && v.kind === "int") return v.value as bigint;
  return undefined;
}

function visitValue(type: QapiType, v: JsonValue, path: Step[]): unknown {
  switch (type.kind) {
    case "str":
      if (typeof v !== "string") typeError(path, "string");
      return v;
    case "bool":
      if (typeof v !== "boolean") typeError(path, "boolean");
      return v;
    case "number":
      if (typeof v === "number") return v;
      if (v instanceof QNum) return v.toNumber();
      return typeError(path, "number");
    case "any":
      return v;
    case "null":
      if (v !== null) typeError(path, "null");
      return null;
    case "int":
      return visitInt(type.name, v, path);
    case "enum": {
      if (typeof v !== "string") typeError(path, "string");
      if (!type.values.includes(v)) {
        throw genericError(`Parameter '${bareName(path)}' does not accept value '${v}'`);
      }
      return v;
    }
    case "array": {
      if (!Array.isArray(v)) typeError(path, "array");
      return v.map((element, i) => visitValue(type.element, element, [...path, i]));
    }
    case "struct":
      if (!isJsonObject(v)) typeError(path, "object");
      return visitStruct(type, v, path);
  }
}

function visitInt(name: QapiIntName, v: JsonValue, path: Step[]): number {
  if (name === "uint64" || name === "size") {
    // qemu accepts negative int64 values here too, as their two's complement.
    let n: bigint | undefined;
    if (v instanceof QNum && v.kind === "uint") n = v.value as bigint;
    else {
      const i = asInt64(v);
      if (i !== undefined) n = i < 0n ? i + 2n ** 64n : i;
    }
    if (n === undefined) {
      if (name === "size") typeError(path, "size");
      throw genericError(`Parameter '${fullName(path)}' expects uint64`);
    }
    return Number(n);
  }
  const i = asInt64(v);
  if (i === undefined) typeError(path, "integer");
  const range = RANGES[name];
  if (range && (i < range[0] || i > range[1])) {
    throw genericError(`Parameter '${bareName(path)}' expects ${range[2]}`);
  }
  return Number(i);
}

function visitStruct(type: QapiStruct, dict: JsonObject, path: Step[]): Record<string, unknown> {
  // The not yet consumed member names, laid out as qemu's visitor keeps them.
  const left = new GHashTableModel();
  for (const key of qdictKeys(dict)) left.insert(key);
  const out: Record<string, unknown> = {};
  for (const member of type.members) {
    const memberPath = [...path, member.name];
    if (!hasMember(dict, member.name)) {
      if (!member.optional) throw genericError(`Parameter '${fullName(memberPath)}' is missing`);
      if ("default" in member) out[member.name] = member.default;
      continue;
    }
    left.remove(member.name);
    out[member.name] = visitValue(member.type, dict[member.name]!, memberPath);
  }
  const extra = left.first();
  if (extra !== undefined) {
    throw genericError(`Parameter '${fullName([...path, extra])}' is unexpected`);
  }
  return out;
}

/**
 * Checks a command's `arguments` against its type and returns them as plain
 * values (integers as numbers, defaults filled in); throws a
 * {@linkcode QmpError} with qemu's text on the first problem.
 */
export function visitArguments(type: QapiStruct, args: JsonObject): Record<string, unknown> {
  return visitStruct(type, args, []);
}
