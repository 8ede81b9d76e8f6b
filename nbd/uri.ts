/**
 * qemu's names for NBD exports, parsed and formatted:
 *
 * - URIs, as used for backing files and `-f raw nbd…` arguments:
 *   `nbd://HOST[:PORT]/EXPORT` (also `nbd+tcp://`; port 10809 by default;
 *   an IPv6 host in brackets) and `nbd+unix:///EXPORT?socket=PATH`. An empty
 *   export path means the default export `""`. Export and socket are
 *   percent-decoded.
 * - qemu's legacy form `nbd:HOST:PORT[:exportname=NAME]` and
 *   `nbd:unix:PATH[:exportname=NAME]` (parse only).
 * - The `--blockdev driver=nbd,…` option set of qemu-storage-daemon
 *   (`server.type=unix,server.path=…` or
 *   `server.type=inet,server.host=…,server.port=…`, `export=NAME`), and the
 *   same socket address under another prefix (`--nbd-server addr.type=…`).
 *
 * Deviations: ports must be numbers (qemu also takes service names), and
 * TLS (`tls-creds`) is not supported.
 *
 * @module
 */

import type { NbdAddress } from "./address.ts";
import { NbdUriError } from "./error.ts";
import { NBD_DEFAULT_PORT } from "./protocol.ts";

/** An export on a server: what a URI names. */
export interface NbdTarget {
  /** Where the server listens. */
  address: NbdAddress;
  /** Export name; `""` is the default export. */
  exportName: string;
}

const SCHEMES: Record<string, "inet" | "unix"> = {
  "nbd": "inet",
  "nbd+tcp": "inet",
  "nbd+unix": "unix",
};

/** Whether `text` is written in one of qemu's NBD URI or legacy forms. */
export function isNbdUri(text: string): boolean {
  return /^nbd(\+tcp|\+unix)?:\/\//.test(text) || /^nbd:/.test(text);
}

function bad(text: string, why: string): NbdUriError {
  return new NbdUriError("NBD_BAD_URI", `Invalid NBD URI '${text}': ${why}`);
}

function decode(part: string, whole: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw bad(whole, `bad percent-encoding in '${part}'`);
  }
}

function parsePort(text: string, whole: () => NbdUriError): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw whole();
  return Number(text);
}

/**
 * Parses an NBD URI (or qemu's legacy `nbd:` form) into an address and an
 * export name.
 *
 * @example
 * ```ts
 * import { parseNbdUri } from "./uri.ts";
 * console.log(parseNbdUri("nbd+unix:///tpl?socket=/run/nbd.sock"));
 * // { address: { type: "unix", path: "/run/nbd.sock" }, exportName: "tpl" }
 * console.log(parseNbdUri("nbd://example.org/tpl").address); // port 10809
 * ```
 */
export function parseNbdUri(text: string): NbdTarget {
  const m = /^([a-z+]+):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?$/.exec(text);
  if (!m) return parseLegacy(text);
  const [, scheme, authority = "", path = "", query, fragment] = m;
  const kind = SCHEMES[scheme!];
  if (!kind) throw bad(text, `unknown scheme '${scheme}' (use nbd, nbd+tcp or nbd+unix)`);
  if (fragment !== undefined) throw bad(text, "a fragment is not allowed");
  const exportName = decode(path.startsWith("/") ? path.slice(1) : path, text);
  const params = query === undefined || query === "" ? [] : query.split("&").map((p) => {
    const eq = p.indexOf("=");
    return eq < 0 ? [p, ""] : [p.slice(0, eq), decode(p.slice(eq + 1), text)];
  });
  if (kind === "unix") {
    if (authority !== "") {
      throw bad(text, "nbd+unix takes no host or port (use nbd+unix:///EXPORT?socket=PATH)");
    }
    if (params.length !== 1 || params[0]![0] !== "socket") {
      throw bad(text, "nbd+unix needs exactly one query parameter, socket=PATH");
    }
    const path = params[0]![1]!;
    if (path === "") throw bad(text, "the socket path is empty");
    return { address: { type: "unix", path }, exportName };
  }
  if (params.length !== 0) throw bad(text, `${scheme} takes no query parameters`);
  const hm = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+))(?::(\d*))?$/.exec(authority);
  if (!hm) throw bad(text, authority === "" ? "a host is required" : `bad host '${authority}'`);
  const host = decode(hm[1] ?? hm[2]!, text);
  const port = hm[3] ? parsePort(hm[3], () => bad(text, `bad port '${hm[3]}'`)) : NBD_DEFAULT_PORT;
  return { address: { type: "inet", host, port }, exportName };
}

/** qemu's pre-URI syntax: `nbd:unix:PATH[:exportname=E]`, `nbd:HOST:PORT[:exportname=E]`. */
function parseLegacy(text: string): NbdTarget {
  if (!text.startsWith("nbd:")) throw bad(text, "not an NBD URI (nbd://, nbd+tcp://, nbd+unix://)");
  let rest = text.slice(4);
  let exportName = "";
  const at = rest.indexOf(":exportname=");
  if (at >= 0) {
    exportName = rest.slice(at + ":exportname=".length);
    rest = rest.slice(0, at);
  }
  if (rest.startsWith("unix:")) {
    const path = rest.slice(5);
    if (path === "") throw bad(text, "the socket path is empty");
    return { address: { type: "unix", path }, exportName };
  }
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d+)$/.exec(rest);
  if (!m) throw bad(text, "expected nbd:HOST:PORT or nbd:unix:PATH");
  const port = parsePort(m[3]!, () => bad(text, `bad port '${m[3]}'`));
  return { address: { type: "inet", host: m[1] ?? m[2]!, port }, exportName };
}

/** Percent-encodes all but unreserved characters and `/`. */
function encode(text: string): string {
  return encodeURIComponent(text).replace(/%2F/g, "/").replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/**
 * Formats an address and export as qemu names them (`nbd://host:port/export`,
 * always with the port, or `nbd+unix:///export?socket=path`).
 *
 * @example
 * ```ts
 * import { formatNbdUri } from "./uri.ts";
 * console.log(formatNbdUri({ address: { type: "unix", path: "/s" }, exportName: "e" }));
 * // nbd+unix:///e?socket=/s
 * ```
 */
export function formatNbdUri(target: NbdTarget): string {
  const path = encode(target.exportName);
  const a = target.address;
  if (a.type === "unix") return `nbd+unix:///${path}?socket=${encode(a.path)}`;
  const host = a.host.includes(":") ? `[${a.host}]` : encode(a.host);
  return `nbd://${host}:${a.port}/${path}`;
}

/** The `driver=nbd` blockdev options qedstream understands (qemu's `BlockdevOptionsNbd`). */
export interface NbdBlockdevOptions {
  /** `server.*`: where the server listens. */
  server: NbdAddress;
  /** `export`: export name (default `""`). */
  export: string;
  /** `reconnect-delay`: seconds that requests wait for a reconnection (default 0). */
  reconnectDelay: number;
  /** `open-timeout`: seconds to keep trying the first connection (default 0). */
  openTimeout: number;
}

function missing(key: string): NbdUriError {
  return new NbdUriError("NBD_BAD_OPTION", `Parameter '${key}' is missing`);
}

function invalid(key: string, value: string, expected: string): NbdUriError {
  return new NbdUriError(
    "NBD_BAD_OPTION",
    `Parameter '${key}' does not accept value '${value}' (expected ${expected})`,
  );
}

/**
 * Reads a socket address from flat dotted options under `prefix`
 * (`server` for a blockdev, `addr` for `--nbd-server`).
 *
 * @example
 * ```ts
 * import { parseSocketAddress } from "./uri.ts";
 * console.log(parseSocketAddress({ "addr.type": "unix", "addr.path": "/s" }, "addr"));
 * // { type: "unix", path: "/s" }
 * ```
 */
export function parseSocketAddress(flat: Record<string, string>, prefix: string): NbdAddress {
  const key = (k: string) => `${prefix}.${k}`;
  const type = flat[key("type")];
  const allowed = type === "unix" ? ["type", "path"] : ["type", "host", "port"];
  for (const k of Object.keys(flat)) {
    if (k.startsWith(`${prefix}.`) && !allowed.includes(k.slice(prefix.length + 1))) {
      throw new NbdUriError("NBD_BAD_OPTION", `Parameter '${k}' is unexpected`);
    }
  }
  if (type === undefined) throw missing(key("type"));
  if (type === "unix") {
    const path = flat[key("path")];
    if (!path) throw missing(key("path"));
    return { type: "unix", path };
  }
  if (type === "inet") {
    const host = flat[key("host")];
    if (!host) throw missing(key("host"));
    const portText = flat[key("port")];
    if (portText === undefined) throw missing(key("port"));
    const port = parsePort(portText, () => invalid(key("port"), portText, "a port number"));
    return { type: "inet", host, port };
  }
  throw invalid(key("type"), type, "'unix' or 'inet'");
}

/**
 * Reads qemu's `driver=nbd` blockdev options from flat dotted keys; keys
 * that belong to the caller (`driver`, `node-name`, `read-only`, `cache.*`,
 * `auto-read-only`, `discard`, `detect-zeroes`) are ignored, others rejected.
 *
 * @example
 * ```ts
 * import { parseNbdBlockdevOptions } from "./uri.ts";
 * const o = parseNbdBlockdevOptions({
 *   driver: "nbd", "server.type": "inet", "server.host": "127.0.0.1", "server.port": "10809",
 *   export: "tpl",
 * });
 * console.log(o.server, o.export); // { type: "inet", host: "127.0.0.1", port: 10809 } tpl
 * ```
 */
export function parseNbdBlockdevOptions(flat: Record<string, string>): NbdBlockdevOptions {
  const generic = [
    "driver",
    "node-name",
    "read-only",
    "auto-read-only",
    "discard",
    "detect-zeroes",
  ];
  for (const k of Object.keys(flat)) {
    if (k.startsWith("server.") || k.startsWith("cache.") || generic.includes(k)) continue;
    if (k === "export" || k === "reconnect-delay" || k === "open-timeout") continue;
    throw new NbdUriError("NBD_BAD_OPTION", `Parameter '${k}' is unexpected`);
  }
  const seconds = (k: string): number => {
    const v = flat[k];
    if (v === undefined) return 0;
    if (!/^\d+$/.test(v)) throw invalid(k, v, "a number of seconds");
    return Number(v);
  };
  return {
    server: parseSocketAddress(flat, "server"),
    export: flat["export"] ?? "",
    reconnectDelay: seconds("reconnect-delay"),
    openTimeout: seconds("open-timeout"),
  };
}

/** The blockdev options naming the same export as a URI. */
export function blockdevFromTarget(target: NbdTarget): NbdBlockdevOptions {
  return { server: target.address, export: target.exportName, reconnectDelay: 0, openTimeout: 0 };
}

/** The flat dotted keys of blockdev options, as qemu-storage-daemon's command line takes them. */
export function formatNbdBlockdevOptions(options: NbdBlockdevOptions): Record<string, string> {
  const s = options.server;
  const out: Record<string, string> = s.type === "unix"
    ? { "server.type": "unix", "server.path": s.path }
    : { "server.type": "inet", "server.host": s.host, "server.port": String(s.port) };
  if (options.export !== "") out["export"] = options.export;
  if (options.reconnectDelay) out["reconnect-delay"] = String(options.reconnectDelay);
  if (options.openTimeout) out["open-timeout"] = String(options.openTimeout);
  return out;
}
