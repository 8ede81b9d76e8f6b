/**
 * What the virsh-like verbs (`blockpull`, `blockjob`, `streamdisk`,
 * `streamdiskinfo`) share: virsh's option parsing and texts, the QMP
 * connection named by SOCKET, virsh's progress line, and one `error: …` line
 * per failure, as virsh prints it.
 *
 * @module
 */

import { parseSocketAddress } from "../daemon/args.ts";
import { QedstreamError } from "../io/error.ts";
import { ManageError } from "../manage/mod.ts";
import { QmpClient } from "../qmp/client.ts";
import type { CliOutput } from "./output.ts";

/** A failure reported in virsh's words: the message follows `error: `. */
export class VirshError extends QedstreamError {
  /** Makes an error whose message is virsh's text. */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("VIRSH_ERROR", message, options);
  }
}

/** The options one verb accepts, virsh-style (`--name` or `--name value`). */
export interface VirshSpec {
  /** The verb, for virsh's messages. */
  verb: string;
  /** Names of the positional arguments, in order (`socket`, `path`, …); the first `required` are required. */
  operands: string[];
  /** How many operands are required. */
  required: number;
  /** Options that take a value. */
  values: string[];
  /** Boolean options. */
  flags: string[];
}

/** A parsed virsh-style command line: every option and positional by name. */
export interface VirshArgs {
  /** The values of value options and positionals, by name. */
  values: Map<string, string>;
  /** The boolean options given. */
  flags: Set<string>;
}

/**
 * Parses `argv` as virsh parses a command's options: `--name value`,
 * `--name=value`, boolean `--name`, and positionals filling the named
 * operands in order (a positional may also be given as `--name value`).
 */
export function parseVirshArgs(argv: readonly string[], spec: VirshSpec): VirshArgs {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("--")) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    if (spec.flags.includes(name) && eq < 0) {
      flags.add(name);
    } else if (spec.values.includes(name) || spec.operands.includes(name)) {
      const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined) {
        throw new VirshError(`expected syntax: --${name} <string>`);
      }
      if (values.has(name)) throw new VirshError(`option --${name} already seen`);
      values.set(name, value);
    } else {
      throw new VirshError(`command '${spec.verb}' doesn't support option --${name}`);
    }
  }
  const free = spec.operands.filter((n) => !values.has(n));
  for (const p of positional) {
    const name = free.shift();
    if (name === undefined) throw new VirshError(`unexpected data '${p}'`);
    values.set(name, p);
  }
  for (const name of spec.operands.slice(0, spec.required)) {
    if (!values.has(name)) {
      throw new VirshError(`command '${spec.verb}' requires <${name}> option`);
    }
  }
  return { values, flags };
}

/** virsh's `VSH_REQUIRE_OPTION`: `option` needs `needed`. */
export function requireOption(args: VirshArgs, option: string, needed: string): void {
  if (has(args, option) && !has(args, needed)) {
    throw new VirshError(`Option --${needed} is required by option --${option}`);
  }
}

/** virsh's `VSH_EXCLUSIVE_OPTIONS`. */
export function exclusiveOptions(args: VirshArgs, a: string, b: string): void {
  if (has(args, a) && has(args, b)) {
    throw new VirshError(`Options --${a} and --${b} are mutually exclusive`);
  }
}

/** Whether an option (boolean or valued) was given. */
export function has(args: VirshArgs, name: string): boolean {
  return args.flags.has(name) || args.values.has(name);
}

const SCALE: Record<string, number> = {
  "": 1,
  b: 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
};

/**
 * virsh's `--bandwidth`: a plain integer (MiB/s, or bytes/s with `--bytes`),
 * or a scaled size (`10M`, in bytes/s, turned into MiB/s without `--bytes`).
 */
export function parseBandwidth(text: string, bytes: boolean): number {
  if (/^\d+$/.test(text)) return Number(text);
  const m = text.match(/^(\d+)([bkmgt]?)(?:i?b)?$/i);
  const scale = m ? SCALE[m[2]!.toLowerCase()] : undefined;
  if (!m || scale === undefined || !Number.isSafeInteger(Number(m[1]) * scale)) {
    throw new VirshError(
      `Scaled numeric value '${text}' for <--bandwidth> option is malformed or out of range`,
    );
  }
  const value = Number(m[1]) * scale;
  return bytes ? value : Math.floor(value / 2 ** 20);
}

/** virsh's non-negative integer options (`--timeout`, offsets). */
export function parseNumber(text: string, name: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new VirshError(
      `Numeric value '${text}' for <${name}> option is malformed or out of range`,
    );
  }
  return Number(text);
}

/** Connects to the QMP socket named `unix:PATH` or `tcp:HOST:PORT`. */
export async function connectSocket(text: string): Promise<QmpClient> {
  let address;
  try {
    address = parseSocketAddress(text);
  } catch (e) {
    throw new VirshError(e instanceof Error ? e.message : String(e), { cause: e });
  }
  const where = address.type === "unix" ? address.path : `${address.host}:${address.port}`;
  try {
    return await QmpClient.connect(
      address.type === "unix"
        ? { path: address.path }
        : { hostname: address.host, port: address.port },
    );
  } catch (e) {
    const reason = e instanceof Deno.errors.NotFound
      ? "No such file or directory"
      : e instanceof Deno.errors.ConnectionRefused
      ? "Connection refused"
      : e instanceof Error
      ? e.message
      : String(e);
    throw new VirshError(`Failed to connect socket to '${where}': ${reason}`, { cause: e });
  }
}

/**
 * virsh's progress line (libvirt 9.0): `\rLABEL: [ 45 %]`, nothing while
 * `total` is 0, 100 only when nothing remains, else at most 99.
 */
export function jobProgress(label: string, remaining: number, total: number): string {
  if (total === 0) return "";
  let progress = 100;
  if (remaining !== 0) progress = Math.min(99, Math.trunc(100 - (remaining * 100) / total));
  return `\r${label}: [${String(progress).padStart(3)} %]`;
}

/** The one line virsh prints for a failure (without `error: ` and the newline). */
export function virshMessage(e: unknown): string {
  if (e instanceof ManageError) return e.libvirtMessage;
  const message = e instanceof Error ? e.message : String(e);
  return message.split(/\r?\n/).map((s) => s.trim()).filter((s) => s !== "").join(" ");
}

/**
 * Runs a verb's body with a connection to `socket`, closes it, and turns
 * any failure into `error: …` on standard error and exit code 1.
 */
export async function runVirsh(
  out: CliOutput,
  body: () => Promise<number>,
): Promise<number> {
  try {
    return await body();
  } catch (e) {
    out.stderr(`error: ${virshMessage(e)}\n`);
    return 1;
  }
}

/** Runs `fn` with a QMP client on `socket`, closing it afterwards. */
export async function withConnection<T>(
  socket: string,
  fn: (conn: QmpClient) => Promise<T>,
): Promise<T> {
  const conn = await connectSocket(socket);
  try {
    return await fn(conn);
  } finally {
    await conn.close();
  }
}
