/**
 * The `qedstream` command: verbs modelled on qemu-img and qemu-io over
 * qedstream's QED and raw images.
 *
 * ```
 * deno task qedstream create -f qed -b base.raw -F raw ov.qed
 * deno task qedstream io ov.qed -c 'write -P 0xab 0 64k'
 * deno task qedstream check ov.qed
 * ```
 *
 * Only this layer turns errors into a line on standard error and an exit
 * code; every verb lives in `cli/`.
 *
 * @module
 */

import { blockcommitCommand } from "./cli/blockcommit.ts";
import { blockjobCommand } from "./cli/blockjob.ts";
import { blockpullCommand } from "./cli/blockpull.ts";
import { checkCommand } from "./cli/check.ts";
import { compareCommand } from "./cli/compare.ts";
import { createCommand } from "./cli/create.ts";
import { demoCommand } from "./cli/demo.ts";
import { CliError, describeError } from "./cli/error.ts";
import { formatHelp, formatVersion } from "./cli/help.ts";
import { infoCommand } from "./cli/info.ts";
import { ioCommand } from "./cli/io.ts";
import { manifestCommand } from "./cli/manifest.ts";
import { mapCommand } from "./cli/map.ts";
import { type CliOutput, processOutput } from "./cli/output.ts";
import { rebaseCommand } from "./cli/rebase.ts";
import { serveCommand } from "./cli/serve.ts";
import { streamCommand } from "./cli/stream.ts";
import { streamdiskCommand, streamdiskinfoCommand } from "./cli/streamdisk.ts";
import { verifyCommand } from "./cli/verify.ts";

/** A verb: takes its arguments, prints, and returns the exit code. */
export type Verb = (argv: readonly string[], out: CliOutput) => Promise<number>;

/** The verbs by name. */
export const VERBS: Readonly<Record<string, Verb>> = {
  create: createCommand,
  info: infoCommand,
  check: checkCommand,
  map: mapCommand,
  compare: compareCommand,
  rebase: rebaseCommand,
  io: ioCommand,
  stream: streamCommand,
  demo: demoCommand,
  serve: serveCommand,
  blockpull: blockpullCommand,
  blockjob: blockjobCommand,
  blockcommit: blockcommitCommand,
  streamdisk: streamdiskCommand,
  streamdiskinfo: streamdiskinfoCommand,
  manifest: manifestCommand,
  verify: verifyCommand,
};

/**
 * Runs the command line `argv` and returns the exit code. Never throws:
 * every failure becomes one line `qedstream: …` on `out.stderr`.
 *
 * @example
 * ```ts
 * import { main } from "./cli.ts";
 * import { BufferedOutput } from "./cli/output.ts";
 * const out = new BufferedOutput();
 * console.log(await main(["--version"], out), out.out);
 * ```
 */
export async function main(
  argv: readonly string[],
  out: CliOutput = processOutput,
): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === "help" || verb === "--help" || verb === "-h") {
    out.stdout(formatHelp());
    return verb === undefined ? 1 : 0;
  }
  if (verb === "--version" || verb === "-V") {
    out.stdout(formatVersion());
    return 0;
  }
  const run = VERBS[verb];
  if (run === undefined) {
    out.stderr(`qedstream: Command not found: ${verb} (try 'qedstream help')\n`);
    return 1;
  }
  // demo and serve have their own help: their options are many and unlike the image verbs'.
  if (verb !== "demo" && verb !== "serve" && (rest.includes("--help") || rest.includes("-h"))) {
    out.stdout(formatHelp());
    return 0;
  }
  try {
    return await run(rest, out);
  } catch (e) {
    out.stderr(`qedstream: ${describeError(e)}\n`);
    return e instanceof CliError ? e.exitCode : 1;
  }
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
