/**
 * The `--blockdev` / `blockdev-add` options qedstream accepts: the subset of
 * qemu 7.2's `BlockdevOptions` for the drivers it has, with qemu's member
 * names, types and defaults.
 *
 * @module
 */

import { OptionError } from "./keyval.ts";
import { checkOption, type OptionMember, type OptionType, t } from "./option_schema.ts";

/** The drivers qedstream implements. */
export const SUPPORTED_DRIVERS = [
  "file",
  "raw",
  "qed",
  "copy-on-read",
  "null-co",
  "nbd",
  "blkdebug",
  "quorum",
] as const;

/** A driver qedstream implements. */
export type SupportedDriver = typeof SUPPORTED_DRIVERS[number];

/** Drivers qemu 7.2 knows but qedstream does not implement: refused with a clear message. */
const QEMU_ONLY_DRIVERS = [
  "blklogwrites",
  "blkreplay",
  "blkverify",
  "bochs",
  "cloop",
  "compress",
  "copy-before-write",
  "dmg",
  "ftp",
  "ftps",
  "gluster",
  "host_cdrom",
  "host_device",
  "http",
  "https",
  "io_uring",
  "iscsi",
  "luks",
  "nfs",
  "null-aio",
  "nvme",
  "parallels",
  "preallocate",
  "qcow",
  "qcow2",
  "rbd",
  "replication",
  "snapshot-access",
  "ssh",
  "throttle",
  "vdi",
  "vhdx",
  "vmdk",
  "vpc",
  "vvfat",
];

const socketAddress: OptionType = {
  kind: "union",
  tag: "type",
  base: { type: t.req(t.enum("inet", "unix", "vsock", "fd")) },
  variants: {
    inet: {
      host: t.req(t.str),
      port: t.req(t.str),
      numeric: t.opt(t.bool),
      to: t.opt(t.int(0)),
      ipv4: t.opt(t.bool),
      ipv6: t.opt(t.bool),
      "keep-alive": t.opt(t.bool),
    },
    unix: { path: t.req(t.str), abstract: t.opt(t.bool), tight: t.opt(t.bool) },
    vsock: { cid: t.req(t.str), port: t.req(t.str) },
    fd: { str: t.req(t.str) },
  },
};

const ref: OptionType = { kind: "ref", nullable: false, inline: () => blockdevOptions };
const refOrNull: OptionType = { kind: "ref", nullable: true, inline: () => blockdevOptions };

const variants: Record<string, Record<string, OptionMember>> = {
  file: {
    filename: t.req(t.str),
    "pr-manager": t.opt(t.str),
    locking: t.opt(t.enum("auto", "on", "off")),
    aio: t.opt(t.enum("threads", "native", "io_uring")),
    "aio-max-batch": t.opt(t.int(0)),
    "drop-cache": t.opt(t.bool),
    "x-check-cache-dropped": t.opt(t.bool),
  },
  raw: { file: t.req(ref), offset: t.opt(t.int(0)), size: t.opt(t.int(0)) },
  qed: { file: t.req(ref), backing: t.opt(refOrNull) },
  "copy-on-read": { file: t.req(ref), bottom: t.opt(t.str) },
  // The rules are checked by daemon/blkdebug.ts; the limits are accepted and not applied.
  blkdebug: {
    image: t.req(ref),
    config: t.opt(t.str),
    align: t.opt(t.int(0)),
    "max-transfer": t.opt(t.int(0)),
    "opt-write-zero": t.opt(t.int(0)),
    "max-write-zero": t.opt(t.int(0)),
    "opt-discard": t.opt(t.int(0)),
    "max-discard": t.opt(t.int(0)),
    "inject-error": t.opt(t.any),
    "set-state": t.opt(t.any),
    "take-child-perms": t.opt(t.any),
    "unshare-child-perms": t.opt(t.any),
  },
  // Members in qemu's QAPI order (BlockdevOptionsQuorum), which decides which error comes first.
  quorum: {
    blkverify: t.opt(t.bool),
    children: t.req(t.list(ref)),
    "vote-threshold": t.req(t.int()),
    "rewrite-corrupted": t.opt(t.bool),
    "read-pattern": t.opt(t.enum("quorum", "fifo")),
  },
  "null-co": { size: t.opt(t.int(0)), "latency-ns": t.opt(t.int(0)), "read-zeroes": t.opt(t.bool) },
  nbd: {
    server: t.req(socketAddress),
    export: t.opt(t.str),
    "tls-creds": t.opt(t.str),
    "tls-hostname": t.opt(t.str),
    "x-dirty-bitmap": t.opt(t.str),
    "reconnect-delay": t.opt(t.int(0)),
    "open-timeout": t.opt(t.int(0)),
  },
};

/** qemu's BlockdevOptions, restricted to {@linkcode SUPPORTED_DRIVERS}. */
export const blockdevOptions: OptionType = {
  kind: "union",
  tag: "driver",
  base: {
    driver: t.req(t.enum(...SUPPORTED_DRIVERS, ...QEMU_ONLY_DRIVERS)),
    "node-name": t.opt(t.str),
    discard: t.opt(t.enum("ignore", "unmap")),
    cache: t.opt(t.struct({ direct: t.opt(t.bool), "no-flush": t.opt(t.bool) })),
    "read-only": t.opt(t.bool),
    "auto-read-only": t.opt(t.bool),
    "force-share": t.opt(t.bool),
    "detect-zeroes": t.opt(t.enum("off", "on", "unmap")),
  },
  variants,
  unsupported: (driver) =>
    `Driver '${driver}' is not supported by qedstream (supported: ${SUPPORTED_DRIVERS.join(", ")})`,
};

/** Checked `--blockdev` options: members converted, nested definitions kept as objects. */
export interface BlockdevOptions {
  driver: SupportedDriver;
  "node-name"?: string;
  "read-only"?: boolean;
  [member: string]: unknown;
}

const NODE_NAME = /^[A-Za-z][A-Za-z0-9._-]{0,30}$/;

/**
 * Checks `--blockdev` options (a keyval tree or JSON) as qemu does, with its
 * texts. Nested inline node definitions are checked too.
 */
export function checkBlockdevOptions(value: unknown, fromKeyval: boolean): BlockdevOptions {
  const options = checkOption(blockdevOptions, value, "", fromKeyval) as BlockdevOptions;
  if (!(SUPPORTED_DRIVERS as readonly string[]).includes(options.driver)) {
    throw new OptionError(
      "OPTION_UNSUPPORTED_DRIVER",
      `Driver '${options.driver}' is not supported by qedstream (supported: ${
        SUPPORTED_DRIVERS.join(", ")
      })`,
    );
  }
  const name = options["node-name"];
  if (name !== undefined && !NODE_NAME.test(name)) {
    throw new OptionError("OPTION_BAD_NODE_NAME", `Invalid node-name: '${name}'`);
  }
  return options;
}
