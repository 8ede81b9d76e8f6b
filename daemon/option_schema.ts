/**
 * Schemas for command-line options, checked the way qemu's QAPI input
 * visitor checks them, with its error texts.
 *
 * A value comes either from `key=value` syntax (every leaf a string, which
 * the schema converts) or from JSON (already typed, which the schema checks).
 *
 * @module
 */

import { OptionError } from "./keyval.ts";

/** The type of one option member. */
export type OptionType =
  | { kind: "str" }
  | { kind: "bool" }
  | { kind: "int"; min?: number }
  | { kind: "enum"; values: readonly string[] }
  | { kind: "struct"; members: Readonly<Record<string, OptionMember>> }
  | {
    kind: "union";
    tag: string;
    base: Readonly<Record<string, OptionMember>>;
    variants: Readonly<Record<string, Readonly<Record<string, OptionMember>>>>;
    /** The message for a tag value the enum allows but that has no variant here. */
    unsupported?: (tag: string) => string;
  }
  /** A node name or an inline definition of a node (qemu's BlockdevRef, or BlockdevRefOrNull). */
  | { kind: "ref"; nullable: boolean; inline: () => OptionType }
  /** A list (a JSON array, or keyval's numbered keys `x.0`, `x.1`). */
  | { kind: "list"; element: OptionType }
  /** Accepted and kept as given (a JSON value or a keyval tree). */
  | { kind: "any" };

/** A member of a struct: its type and whether it may be left out. */
export interface OptionMember {
  type: OptionType;
  optional?: boolean;
}

/** Shorthands for building schemas. */
export const t = {
  str: { kind: "str" } as OptionType,
  bool: { kind: "bool" } as OptionType,
  int: (min?: number): OptionType => (min === undefined ? { kind: "int" } : { kind: "int", min }),
  enum: (...values: string[]): OptionType => ({ kind: "enum", values }),
  struct: (members: Record<string, OptionMember>): OptionType => ({ kind: "struct", members }),
  list: (element: OptionType): OptionType => ({ kind: "list", element }),
  any: { kind: "any" } as OptionType,
  req: (type: OptionType): OptionMember => ({ type }),
  opt: (type: OptionType): OptionMember => ({ type, optional: true }),
};

const JSON_TYPE_NAMES: Record<string, string> = {
  str: "string",
  bool: "boolean",
  int: "integer",
  enum: "string",
  struct: "object",
  union: "object",
  list: "array",
};

/**
 * The bare name qemu's generated visitors put in enum and alternate errors:
 * the member's own name, or `null` for a list element (`children[0]`,
 * keyval's `children.0`).
 */
function bareName(path: string): string {
  if (path.endsWith("]")) return "null";
  const last = path.slice(path.lastIndexOf(".") + 1);
  return /^[0-9]+$/.test(last) ? "null" : last;
}

/**
 * Checks `value` against `type` and returns it converted: keyval strings
 * become booleans and numbers, references stay strings or nested objects.
 * `path` names the member in messages (`"cache.direct"`, a list element
 * `"children[0]"` in JSON and `"children.0"` in keyval syntax, as qemu).
 */
export function checkOption(
  type: OptionType,
  value: unknown,
  path: string,
  fromKeyval: boolean,
): unknown {
  const typeError = () =>
    new OptionError(
      "OPTION_BAD_TYPE",
      `Invalid parameter type for '${path}', expected: ${JSON_TYPE_NAMES[type.kind] ?? type.kind}`,
    );
  switch (type.kind) {
    case "any":
      return value;
    case "str":
      if (typeof value !== "string") throw typeError();
      return value;
    case "bool":
      if (fromKeyval) {
        if (value === "on") return true;
        if (value === "off") return false;
        if (typeof value === "string") {
          throw new OptionError("OPTION_BAD_BOOL", `Parameter '${path}' expects 'on' or 'off'`);
        }
        throw typeError();
      }
      if (typeof value !== "boolean") throw typeError();
      return value;
    case "int": {
      let n: number;
      if (fromKeyval && typeof value === "string") {
        if (!/^-?(0x[0-9a-fA-F]+|[0-9]+)$/.test(value)) {
          throw new OptionError("OPTION_BAD_INT", `Parameter '${path}' expects integer`);
        }
        n = Number(value);
      } else if (typeof value === "number" && Number.isInteger(value)) n = value;
      else throw typeError();
      if (type.min !== undefined && n < type.min) {
        throw new OptionError(
          "OPTION_RANGE",
          `Parameter '${path}' expects a value of at least ${type.min}`,
        );
      }
      return n;
    }
    case "enum":
      if (typeof value !== "string") throw typeError();
      if (!type.values.includes(value)) {
        throw new OptionError(
          "OPTION_BAD_ENUM",
          `Parameter '${bareName(path)}' does not accept value '${value}'`,
        );
      }
      return value;
    case "ref":
      // keyval spells JSON null as the string "null" (qemu: backing=null).
      if (fromKeyval && type.nullable && value === "null") return null;
      if (typeof value === "string") return value;
      if (value === null && type.nullable) return null;
      if (typeof value === "object" && value !== null && !Array.isArray(value)) {
        return checkOption(type.inline(), value, path, fromKeyval);
      }
      // An alternate's error names the member bare, as qemu's generated visitor does.
      throw new OptionError(
        "OPTION_BAD_TYPE",
        `Invalid parameter type for '${bareName(path)}', expected: ${
          type.nullable ? "BlockdevRefOrNull" : "BlockdevRef"
        }`,
      );
    case "list": {
      if (!Array.isArray(value)) throw typeError();
      return value.map((element, i) =>
        checkOption(
          type.element,
          element,
          fromKeyval ? `${path}.${i}` : `${path}[${i}]`,
          fromKeyval,
        )
      );
    }
    case "struct":
      return checkMembers(type.members, value, path, fromKeyval, typeError);
    case "union": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) throw typeError();
      const record = value as Record<string, unknown>;
      const base = checkMembers(
        type.base,
        pick(record, Object.keys(type.base)),
        path,
        fromKeyval,
        typeError,
        true,
      );
      const tag = base[type.tag] as string;
      const variant = type.variants[tag];
      if (!variant) {
        throw new OptionError(
          "OPTION_UNSUPPORTED",
          type.unsupported?.(tag) ??
            `Parameter '${path ? path + "." : ""}${type.tag}' does not accept value '${tag}'`,
        );
      }
      const rest = omit(record, Object.keys(type.base));
      return { ...base, ...checkMembers(variant, rest, path, fromKeyval, typeError) };
    }
  }
}

function pick(record: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => k in record).map((k) => [k, record[k]]));
}

function omit(record: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([k]) => !keys.includes(k)));
}

function checkMembers(
  members: Readonly<Record<string, OptionMember>>,
  value: unknown,
  path: string,
  fromKeyval: boolean,
  typeError: () => OptionError,
  partial = false,
): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw typeError();
  const record = value as Record<string, unknown>;
  const prefix = path ? `${path}.` : "";
  const out: Record<string, unknown> = {};
  // qemu reports a missing member before an unexpected one, in schema order.
  for (const [name, member] of Object.entries(members)) {
    if (name in record) {
      out[name] = checkOption(member.type, record[name], prefix + name, fromKeyval);
    } else if (!member.optional) {
      throw new OptionError("OPTION_MISSING", `Parameter '${prefix}${name}' is missing`);
    }
  }
  if (!partial) {
    for (const name of Object.keys(record)) {
      if (!(name in members)) {
        throw new OptionError("OPTION_UNEXPECTED", `Parameter '${prefix}${name}' is unexpected`);
      }
    }
  }
  return out;
}
