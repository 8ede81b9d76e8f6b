/**
 * Runs the `qedstream` command as a separate process, as a user would.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { run, type RunResult } from "../_tools.ts";

/** The path of cli.ts. */
export const CLI_PATH: string = fileURLToPath(new URL("../../cli.ts", import.meta.url));

/** The 8 little-endian bytes of a table entry. */
export function u64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

/** Overwrites bytes of a file in place (to damage an image on purpose). */
export async function patchFile(path: string, offset: number, bytes: Uint8Array): Promise<void> {
  const file = await Deno.open(path, { write: true });
  try {
    await file.seek(offset, Deno.SeekMode.Start);
    await file.write(bytes);
  } finally {
    file.close();
  }
}

/** Runs `deno run -A cli.ts ARGS` in `cwd`. */
export function qedstream(args: string[], cwd: string): Promise<RunResult> {
  return run(Deno.execPath(), ["run", "-A", "--no-check", CLI_PATH, ...args], cwd);
}
