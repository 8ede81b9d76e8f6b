/**
 * A small getopt for the verbs: short options (`-f qed`, `-fqed`, grouped
 * flags `-uq`), long options (`--output json`, `--output=json`), options
 * anywhere among the operands like GNU getopt, `--` to end them, and
 * repeated options kept in order.
 *
 * @module
 */

import { CliError } from "./error.ts";

/** Which options a verb accepts. */
export interface ArgSpec {
  /** Short options that take a value, as letters: `"fbFo"`. */
  shortValues?: string;
  /** Short options that are flags: `"uq"`. */
  shortFlags?: string;
  /** Long options that take a value, without dashes: `["output"]`. */
  longValues?: string[];
  /** Long options that are flags, without dashes: `["help"]`. */
  longFlags?: string[];
}

/** The options and operands found on a command line. */
export interface ParsedArgs {
  /** Every value given for each option, in order, keyed by letter or long name. */
  values: Map<string, string[]>;
  /** The flags that were given, keyed by letter or long name. */
  flags: Set<string>;
  /** The operands (non-option arguments), in order. */
  operands: string[];
}

/**
 * Splits `argv` into options and operands following `spec`.
 *
 * @throws {CliError} for an unknown option or a missing value.
 *
 * @example
 * ```ts
 * import { parseArgs } from "./args.ts";
 * const a = parseArgs(["-f", "qed", "x.qed", "--output=json"], {
 *   shortValues: "f",
 *   longValues: ["output"],
 * });
 * console.log(a.values.get("f"), a.values.get("output"), a.operands); // ["qed"] ["json"] ["x.qed"]
 * ```
 */
export function parseArgs(argv: readonly string[], spec: ArgSpec): ParsedArgs {
  const values = new Map<string, string[]>();
  const flags = new Set<string>();
  const operands: string[] = [];
  const shortValues = spec.shortValues ?? "";
  const shortFlags = spec.shortFlags ?? "";
  const add = (key: string, value: string) => {
    const list = values.get(key);
    if (list) list.push(value);
    else values.set(key, [value]);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      if (spec.longValues?.includes(name)) {
        if (eq >= 0) add(name, arg.slice(eq + 1));
        else if (i + 1 < argv.length) add(name, argv[++i]!);
        else throw new CliError(`option '--${name}' requires an argument`);
      } else if (spec.longFlags?.includes(name) && eq < 0) {
        flags.add(name);
      } else {
        throw new CliError(`unrecognized option '${arg}'`);
      }
      continue;
    }
    if (arg.startsWith("-") && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j]!;
        if (shortValues.includes(letter)) {
          if (j + 1 < arg.length) add(letter, arg.slice(j + 1));
          else if (i + 1 < argv.length) add(letter, argv[++i]!);
          else throw new CliError(`option requires an argument -- '${letter}'`);
          break;
        }
        if (!shortFlags.includes(letter)) throw new CliError(`invalid option -- '${letter}'`);
        flags.add(letter);
      }
      continue;
    }
    operands.push(arg);
  }
  return { values, flags, operands };
}

/** The last value given for an option (a later option overrides an earlier one, as in qemu-img). */
export function lastValue(args: ParsedArgs, key: string): string | undefined {
  return args.values.get(key)?.at(-1);
}

/**
 * The `--output` format: `human` (default) or `json`.
 *
 * @throws {CliError} for any other value, with qemu-img's text.
 */
export function outputFormat(args: ParsedArgs): "human" | "json" {
  const value = lastValue(args, "output") ?? "human";
  if (value === "human" || value === "json") return value;
  throw new CliError(`--output must be used with human or json as argument.`);
}

/**
 * The `-f` format of an image operand, when given.
 *
 * @throws {CliError} for a format qedstream cannot open.
 */
export function imageFormat(value: string | undefined): "qed" | "raw" | undefined {
  if (value === undefined || value === "qed" || value === "raw") return value;
  throw new CliError(`Unknown file format '${value}'`);
}
