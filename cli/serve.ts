/**
 * `qedstream serve`: the emulated machine, a drop-in for
 * qemu-storage-daemon where they overlap. It takes qemu-storage-daemon's
 * command line (`--blockdev`, `--chardev socket,…` with `--monitor`,
 * `--nbd-server`, `--export type=nbd,…`, `--pidfile`), plus `--qmp unix:PATH`
 * / `--qmp tcp:HOST:PORT`, `--allow-remote` and the working-set options
 * `--working-set NODE=FILE` / `--record-working-set NODE=FILE`, and runs
 * until `quit`, SIGINT or SIGTERM, which shut it down cleanly.
 *
 * @module
 */

import { type DaemonConfig, parseDaemonArgs } from "../daemon/args.ts";
import { Daemon } from "../daemon/daemon.ts";
import { CliError, describeError } from "./error.ts";
import type { CliOutput } from "./output.ts";

/** The usage text of `qedstream serve`. */
export const SERVE_USAGE = `Usage: qedstream serve [options]
The emulated machine: qemu-storage-daemon's command line for the block layer,
QMP monitors and NBD exports.

  --blockdev [driver=]<driver>,node-name=<N>[,read-only=on|off][,...]
                         a block node: file, raw, qed (backing=<node>|null),
                         copy-on-read (bottom=<node>), null-co, nbd
  --chardev socket,id=<id>,path=<path>,server=on,wait=off
  --chardev socket,id=<id>,host=<host>,port=<port>,server=on,wait=off
  --monitor [chardev=]<id>[,pretty=on|off]
                         a QMP monitor on that socket
  --qmp unix:<path> | tcp:<host>:<port>
                         short form of --chardev + --monitor
  --nbd-server addr.type=unix,addr.path=<path>
  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>[,max-connections=<n>]
  --export [type=]nbd,id=<id>,node-name=<N>[,name=<export-name>][,writable=on|off]
  --pidfile <path>       write the process ID there once started
  --allow-remote         let TCP listeners use addresses other than loopback
  --working-set <node>=<file>
                         streams of that node copy the file's ranges first
                         (block-stream, and __com.qedstream_block-stream when it
                         names no working set); the file must belong to the
                         node's backing chain
  --record-working-set <node>=<file>
                         record the ranges guest reads (NBD exports or devices
                         of that node) take from its backing chain; the file is
                         written at shutdown
  -h, --help             this help
  -V, --version          the version

Unix sockets are created readable and writable by their owner only.
SIGINT, SIGTERM and QMP 'quit' cancel running jobs, write recorded working
sets, flush and close every image.
`;

/** Runs `qedstream serve` until it is told to stop. */
export async function serveCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  let config: DaemonConfig;
  try {
    config = parseDaemonArgs(argv);
  } catch (e) {
    throw new CliError(describeError(e), { exitCode: 1, cause: e });
  }
  if (config.help) {
    out.stdout(SERVE_USAGE);
    return 0;
  }
  if (config.version) {
    out.stdout("qedstream serve, emulating qemu-storage-daemon version 7.2.0\n");
    return 0;
  }
  const daemon = await Daemon.start(config, { log: (line) => out.stderr(`qedstream: ${line}\n`) });
  const stop = () => void daemon.close();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  try {
    if (config.pidfile) await Deno.writeTextFile(config.pidfile, `${Deno.pid}\n`);
    await daemon.closed;
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, stop);
    if (config.pidfile) await Deno.remove(config.pidfile).catch(() => {});
  }
  // Each failure was logged already; the exit code tells a script the shutdown lost something.
  return daemon.shutdownErrors.length > 0 ? 1 : 0;
}
