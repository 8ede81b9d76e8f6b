/**
 * The random and mutated QMP input of the hostile-input campaigns: well-formed
 * requests with random commands, members and values, raw junk, and mutations
 * (byte flips, cuts, duplications, deep nesting). Shared by the campaign at a
 * running `qedstream serve` and the in-process memory-bound test.
 *
 * @module
 */

import type { Random } from "../../sim/random.ts";

const QMP_COMMANDS = [
  "query-version",
  "query-block-jobs",
  "query-jobs",
  "query-named-block-nodes",
  "query-block",
  "query-commands",
  "block-stream",
  "block-job-set-speed",
  "block-job-cancel",
  "block-job-pause",
  "block-job-resume",
  "block-job-dismiss",
  "block-job-complete",
  "job-cancel",
  "job-dismiss",
  "job-finalize",
  "blockdev-add",
  "blockdev-del",
  "block-export-add",
  "nbd-server-add",
  "qmp_capabilities",
  "no-such-command",
];
const QMP_ARGS = [
  "device",
  "job-id",
  "speed",
  "on-error",
  "base",
  "base-node",
  "id",
  "force",
  "node-name",
  "driver",
  "auto-dismiss",
  "auto-finalize",
  "backing-file",
  "file",
  "bottom",
];

function qmpScalar(rng: Random): unknown {
  return rng.pick<unknown>([
    "d0",
    "d1",
    "d2",
    "tpl0",
    "job0",
    "",
    "report",
    "stop",
    "ignore",
    "enospc",
    "auto",
    "qed",
    "é\u0000",
    0,
    -1,
    1.5,
    1e300,
    2 ** 63,
    true,
    false,
    null,
    [],
    {},
    { a: [1, { b: null }] },
    rng.int(0, 1 << 30),
  ]);
}

/** One hostile QMP input (possibly not JSON, possibly several lines). */
export function qmpInput(rng: Random): Uint8Array {
  const enc = new TextEncoder();
  const r = rng.next();
  if (r < 0.15) {
    const bytes = new Uint8Array(rng.int(1, 200));
    for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 256);
    return bytes;
  }
  const args: Record<string, unknown> = {};
  for (let i = rng.int(0, 4); i > 0; i--) args[rng.pick(QMP_ARGS)] = qmpScalar(rng);
  const msg: Record<string, unknown> = { execute: rng.pick(QMP_COMMANDS) };
  if (rng.chance(0.85)) msg.arguments = args;
  if (rng.chance(0.2)) msg.id = qmpScalar(rng);
  if (rng.chance(0.05)) msg["exec-oob"] = msg.execute;
  const text = enc.encode(JSON.stringify(msg));
  if (r < 0.55) return text;
  // Mutated: flips, cuts, duplications, deep nesting.
  const out = [...text];
  for (let i = rng.int(1, 4); i > 0; i--) {
    const at = rng.int(0, out.length);
    const m = rng.int(0, 4);
    if (m === 0) out[at] = rng.int(0, 256);
    else if (m === 1) out.splice(at, rng.int(1, 8));
    else if (m === 2) out.splice(at, 0, ...out.slice(0, rng.int(1, 20)));
    else out.splice(at, 0, ...enc.encode("[".repeat(rng.int(1, 2000))));
  }
  return new Uint8Array(out);
}
