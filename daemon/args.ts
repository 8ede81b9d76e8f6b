/**
 * qemu-storage-daemon's command line, as `qedstream serve` accepts it, so
 * that a script written for one runs the other unchanged.
 *
 * Supported: `--blockdev`, `--chardev socket,…`, `--monitor`, `--nbd-server`,
 * `--export type=nbd,…`, `--pidfile`, `-h`/`--help`, `-V`/`--version`, plus
 * qedstream's short form `--qmp unix:PATH` / `--qmp tcp:HOST:PORT` and
 * `--allow-remote` (TCP on an address other than loopback), and the
 * working-set options `--working-set NODE=FILE` and
 * `--record-working-set NODE=FILE` (`block/working_set.ts`).
 *
 * @module
 */

import { type BlockdevOptions, checkBlockdevOptions } from "./blockdev_schema.ts";
import { OptionError, parseKeyval, parseOptionArgument } from "./keyval.ts";
import { checkOption, type OptionType, t } from "./option_schema.ts";

/** Where a monitor or server listens. */
export type ListenAddress =
  | { type: "unix"; path: string }
  | { type: "inet"; host: string; port: number };

/** A QMP monitor to start. */
export interface MonitorConfig {
  /** The chardev id, or a generated one for `--qmp`. */
  id: string;
  address: ListenAddress;
  pretty: boolean;
}

/** An NBD export to publish. */
export interface ExportConfig {
  id: string;
  nodeName: string;
  /** The export name clients ask for; qemu defaults it to the node name. */
  name: string;
  writable: boolean;
}

/** A working-set file tied to a node, from `--working-set` or `--record-working-set`. */
export interface WorkingSetOption {
  /** The overlay whose backing chain the file describes. */
  nodeName: string;
  /** The working-set file. */
  file: string;
}

/** Everything `serve` was asked to set up, in command-line order where it matters. */
export interface DaemonConfig {
  blockdevs: BlockdevOptions[];
  monitors: MonitorConfig[];
  nbdServer?: { address: ListenAddress; maxConnections?: number };
  exports: ExportConfig[];
  pidfile?: string;
  /** `--working-set`: the ranges streams of the node copy first unless told otherwise. */
  workingSets: WorkingSetOption[];
  /** `--record-working-set`: the guest reads of the node to record until shutdown. */
  recordWorkingSets: WorkingSetOption[];
  allowRemote: boolean;
  help: boolean;
  version: boolean;
}

const OPTIONS_WITH_ARGUMENT = new Set([
  "blockdev",
  "chardev",
  "monitor",
  "nbd-server",
  "export",
  "object",
  "pidfile",
  "qmp",
  "record-working-set",
  "trace",
  "working-set",
]);

const socketAddress = (path: string, value: unknown, fromKeyval: boolean): ListenAddress => {
  const type: OptionType = {
    kind: "union",
    tag: "type",
    base: { type: t.req(t.enum("inet", "unix", "vsock", "fd")) },
    variants: {
      inet: { host: t.req(t.str), port: t.req(t.str), ipv4: t.opt(t.bool), ipv6: t.opt(t.bool) },
      unix: { path: t.req(t.str), abstract: t.opt(t.bool), tight: t.opt(t.bool) },
    },
    unsupported: (kind) => `Address type '${kind}' is not supported by qedstream`,
  };
  const addr = checkOption(type, value, path, fromKeyval) as Record<string, string>;
  return addr.type === "unix"
    ? { type: "unix", path: addr.path! }
    : { type: "inet", host: addr.host!, port: parsePort(addr.port!) };
};

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) {
    throw new OptionError("OPTION_BAD_PORT", `Port '${text}' is not a number from 0 to 65535`);
  }
  return port;
}

const nbdServerSchema: OptionType = t.struct({
  addr: t.req(t.any),
  "tls-creds": t.opt(t.str),
  "tls-authz": t.opt(t.str),
  "max-connections": t.opt(t.int(0)),
});

const exportSchema: OptionType = {
  kind: "union",
  tag: "type",
  base: {
    type: t.req(t.enum("nbd", "vhost-user-blk", "fuse", "vduse-blk")),
    id: t.req(t.str),
    "fixed-iothread": t.opt(t.bool),
    iothread: t.opt(t.str),
    "node-name": t.req(t.str),
    writable: t.opt(t.bool),
    writethrough: t.opt(t.bool),
  },
  variants: {
    nbd: {
      name: t.opt(t.str),
      description: t.opt(t.str),
      bitmaps: t.opt(t.any),
      "allocation-depth": t.opt(t.bool),
    },
  },
  unsupported: (type) => `Export type '${type}' is not supported by qedstream`,
};

const monitorSchema: OptionType = t.struct({
  id: t.opt(t.str),
  chardev: t.req(t.str),
  mode: t.opt(t.enum("readline", "control")),
  pretty: t.opt(t.bool),
});

/** A chardev definition: only server sockets are useful for a monitor. */
interface Chardev {
  id: string;
  address: ListenAddress;
}

const CHARDEV_KEYS = new Set([
  "backend",
  "id",
  "path",
  "host",
  "port",
  "server",
  "wait",
  "nodelay",
  "telnet",
  "ipv4",
  "ipv6",
  "abstract",
  "tight",
  "logfile",
  "logappend",
]);

function parseChardev(text: string): Chardev {
  const tree = parseKeyval(text, "backend");
  for (const key of Object.keys(tree)) {
    if (!CHARDEV_KEYS.has(key)) {
      throw new OptionError("OPTION_UNEXPECTED", `Invalid parameter '${key}'`);
    }
  }
  const id = tree.id;
  if (typeof id !== "string" || id === "") {
    throw new OptionError("OPTION_MISSING", "chardev: no id specified");
  }
  if (tree.backend !== "socket") {
    throw new OptionError(
      "OPTION_UNSUPPORTED",
      `chardev backend '${String(tree.backend)}' is not supported by qedstream (use socket)`,
    );
  }
  for (const flag of ["server", "wait", "nodelay", "telnet"]) {
    if (flag in tree) checkOption(t.bool, tree[flag], flag, true);
  }
  if (tree.server !== "on") {
    throw new OptionError(
      "OPTION_UNSUPPORTED",
      `chardev '${id}': only server sockets (server=on) are supported by qedstream`,
    );
  }
  if (typeof tree.path === "string") return { id, address: { type: "unix", path: tree.path } };
  if (typeof tree.port === "string") {
    // qemu listens on every address when host is empty; qedstream stays on loopback (see serve).
    const host = typeof tree.host === "string" && tree.host !== "" ? tree.host : "127.0.0.1";
    return { id, address: { type: "inet", host, port: parsePort(tree.port) } };
  }
  throw new OptionError("OPTION_MISSING", "chardev: socket: no host given");
}

/** Parses `unix:PATH` or `tcp:HOST:PORT` (the short `--qmp` form and the CLI's SOCKET). */
export function parseSocketAddress(text: string): ListenAddress {
  if (text.startsWith("unix:") && text.length > 5) return { type: "unix", path: text.slice(5) };
  const tcp = text.match(/^tcp:(.*):(\d+)$/);
  if (tcp) {
    return { type: "inet", host: tcp[1]!.replace(/^\[(.*)\]$/, "$1"), port: parsePort(tcp[2]!) };
  }
  throw new OptionError(
    "OPTION_BAD_ADDRESS",
    `Invalid socket address '${text}': expected unix:PATH or tcp:HOST:PORT`,
  );
}

/** Parses `NODE=FILE`; a node may be named once per option. */
function parseWorkingSetOption(
  text: string,
  seen: readonly WorkingSetOption[],
): WorkingSetOption {
  const eq = text.indexOf("=");
  if (eq <= 0 || eq === text.length - 1) {
    throw new OptionError("OPTION_BAD_WORKING_SET", "expected NODE=FILE");
  }
  const option = { nodeName: text.slice(0, eq), file: text.slice(eq + 1) };
  if (seen.some((o) => o.nodeName === option.nodeName)) {
    throw new OptionError(
      "OPTION_DUPLICATE",
      `node '${option.nodeName}' already has a working-set file`,
    );
  }
  return option;
}

/** An error in one command-line argument, prefixed as qemu-storage-daemon prefixes it. */
function inArgument(option: string, value: string, e: unknown): never {
  if (e instanceof OptionError) {
    throw new OptionError(e.code, `--${option} ${value}: ${e.message}`, { cause: e });
  }
  throw e;
}

/**
 * Parses a qemu-storage-daemon command line into a {@linkcode DaemonConfig}.
 * Everything is validated before anything is opened or started.
 *
 * @example
 * ```ts
 * import { parseDaemonArgs } from "./args.ts";
 * const config = parseDaemonArgs([
 *   "--blockdev", "driver=file,node-name=f0,filename=ov.qed",
 *   "--blockdev", "driver=qed,node-name=ov,file=f0",
 *   "--qmp", "unix:/tmp/qmp.sock",
 * ]);
 * console.log(config.blockdevs.length, config.monitors[0]?.address); // 2 { type: "unix", path: "/tmp/qmp.sock" }
 * ```
 */
export function parseDaemonArgs(argv: readonly string[]): DaemonConfig {
  const config: DaemonConfig = {
    blockdevs: [],
    monitors: [],
    exports: [],
    workingSets: [],
    recordWorkingSets: [],
    allowRemote: false,
    help: false,
    version: false,
  };
  const chardevs = new Map<string, Chardev>();
  const monitorArgs: { value: string; tree: Record<string, unknown> }[] = [];
  let qmpCount = 0;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "-h" || arg === "--help") {
      config.help = true;
      continue;
    }
    if (arg === "-V" || arg === "--version") {
      config.version = true;
      continue;
    }
    if (arg === "--allow-remote") {
      config.allowRemote = true;
      continue;
    }
    if (arg === "--daemonize") {
      throw new OptionError("OPTION_UNSUPPORTED", "--daemonize is not supported by qedstream");
    }
    const long = arg.match(/^--?([a-z-]+)(?:=(.*))?$/s);
    const name = long?.[1] === "T" ? "trace" : long?.[1];
    if (!long || !name || !OPTIONS_WITH_ARGUMENT.has(name)) {
      throw new OptionError(
        "OPTION_UNRECOGNIZED",
        arg.startsWith("-") ? `unrecognized option '${arg}'` : `Unexpected argument: ${arg}`,
      );
    }
    let value = long[2];
    if (value === undefined) {
      if (i + 1 >= argv.length) {
        throw new OptionError("OPTION_NO_ARGUMENT", `option '--${name}' requires an argument`);
      }
      value = argv[++i]!;
    }
    try {
      switch (name) {
        case "blockdev": {
          const tree = parseOptionArgument(value, "driver");
          config.blockdevs.push(checkBlockdevOptions(tree, !value.trimStart().startsWith("{")));
          break;
        }
        case "chardev": {
          const chardev = parseChardev(value);
          if (chardevs.has(chardev.id)) {
            throw new OptionError("OPTION_DUPLICATE", `Duplicate ID '${chardev.id}' for chardev`);
          }
          chardevs.set(chardev.id, chardev);
          break;
        }
        case "monitor":
          monitorArgs.push({ value, tree: parseOptionArgument(value, "chardev") });
          break;
        case "qmp":
          config.monitors.push({
            id: `qmp${qmpCount++}`,
            address: parseSocketAddress(value),
            pretty: false,
          });
          break;
        case "nbd-server": {
          if (config.nbdServer) {
            throw new OptionError("NBD_SERVER_RUNNING", "NBD server already running");
          }
          const fromKeyval = !value.trimStart().startsWith("{");
          const server = checkOption(
            nbdServerSchema,
            parseOptionArgument(value),
            "",
            fromKeyval,
          ) as {
            addr: unknown;
            "max-connections"?: number;
          };
          config.nbdServer = {
            address: socketAddress("addr", server.addr, fromKeyval),
            ...(server["max-connections"] === undefined
              ? {}
              : { maxConnections: server["max-connections"] }),
          };
          break;
        }
        case "export": {
          const fromKeyval = !value.trimStart().startsWith("{");
          const e = checkOption(
            exportSchema,
            parseOptionArgument(value, "type"),
            "",
            fromKeyval,
          ) as {
            id: string;
            "node-name": string;
            name?: string;
            writable?: boolean;
          };
          if (config.exports.some((x) => x.id === e.id)) {
            throw new OptionError(
              "EXPORT_ID_IN_USE",
              `Block export id '${e.id}' is already in use`,
            );
          }
          config.exports.push({
            id: e.id,
            nodeName: e["node-name"],
            name: e.name ?? e["node-name"],
            writable: e.writable ?? false,
          });
          break;
        }
        case "pidfile":
          config.pidfile = value;
          break;
        case "working-set":
          config.workingSets.push(parseWorkingSetOption(value, config.workingSets));
          break;
        case "record-working-set":
          config.recordWorkingSets.push(parseWorkingSetOption(value, config.recordWorkingSets));
          break;
        case "object":
        case "trace":
          throw new OptionError("OPTION_UNSUPPORTED", `--${name} is not supported by qedstream`);
      }
    } catch (e) {
      inArgument(name, value, e);
    }
  }
  for (const { value, tree } of monitorArgs) {
    try {
      const m = checkOption(monitorSchema, tree, "", !value.trimStart().startsWith("{")) as {
        chardev: string;
        mode?: string;
        pretty?: boolean;
      };
      if (m.mode === "readline") {
        throw new OptionError("OPTION_UNSUPPORTED", "Only QMP is supported");
      }
      const chardev = chardevs.get(m.chardev);
      if (!chardev) throw new OptionError("OPTION_NO_CHARDEV", `chardev "${m.chardev}" not found`);
      config.monitors.push({ id: chardev.id, address: chardev.address, pretty: m.pretty ?? false });
    } catch (e) {
      inArgument("monitor", value, e);
    }
  }
  if (config.exports.length > 0 && !config.nbdServer) {
    throw new OptionError("NBD_SERVER_MISSING", "--export requires --nbd-server");
  }
  return config;
}
