/**
 * Conformance: the same scripted QMP input goes to a real
 * qemu-storage-daemon 7.2 and to our server; after normalising versions and
 * timestamps, every reply must be identical, byte for byte.
 */

import assert from "node:assert/strict";
import { programsPresent, tempDir } from "../_tools.ts";
import { normalise, RawConnection, startOurs, startQsd } from "./_harness.ts";
import {
  NEGOTIATED_CASES,
  NEGOTIATION_CASES,
  NO_OOB_CASES,
  type ProtocolCase,
} from "./_protocol_cases.ts";

/** Runs the cases on a fresh connection; returns the greeting and each case's lines. */
async function runCases(path: string, cases: ProtocolCase[]): Promise<string[][]> {
  const conn = await RawConnection.open(path);
  try {
    const out: string[][] = [[(await conn.line())!]];
    let n = 0;
    for (const k of cases) {
      for (const w of k.writes) await conn.send(w);
      const marker = `"@sync-${++n}"`;
      await conn.send(`{"execute": "@sync", "id": ${marker}}`);
      out.push((await conn.until(marker)).map(normalise));
    }
    return out;
  } finally {
    conn.close();
  }
}

function compare(cases: ProtocolCase[], qemu: string[][], ours: string[][]): void {
  const diffs: string[] = [];
  if (normalise(qemu[0]![0]!) !== normalise(ours[0]![0]!)) {
    diffs.push(`greeting: ${qemu[0]} vs ${ours[0]}`);
  }
  cases.forEach((k, i) => {
    const a = qemu[i + 1]!;
    const b = ours[i + 1]!;
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      const show = (l: string[]) =>
        JSON.stringify(l.length > 4 ? [...l.slice(0, 4), `… ${l.length} lines`] : l);
      diffs.push(`${k.name}:\n  qemu: ${show(a)}\n  ours: ${show(b)}`);
    }
  });
  assert.equal(
    diffs.length,
    0,
    `${diffs.length} differences from qemu-storage-daemon:\n${diffs.join("\n")}`,
  );
}

Deno.test({
  name: "QmpServer answers every scripted protocol input exactly like qemu-storage-daemon",
  ignore: !programsPresent("qemu-storage-daemon"),
  async fn() {
    await using dir = await tempDir();
    await using qsd = await startQsd(dir.path);
    await using ours = await startOurs(dir.path);
    const script = [...NEGOTIATION_CASES, ...NEGOTIATED_CASES];
    const [qemu, mine] = await Promise.all([
      runCases(qsd.path, script),
      runCases(ours.path, script),
    ]);
    compare(script, qemu, mine);
  },
});

Deno.test({
  name: "QmpServer treats exec-oob like qemu-storage-daemon when oob is not enabled",
  ignore: !programsPresent("qemu-storage-daemon"),
  async fn() {
    await using dir = await tempDir();
    await using qsd = await startQsd(dir.path);
    await using ours = await startOurs(dir.path);
    const [qemu, mine] = await Promise.all([
      runCases(qsd.path, NO_OOB_CASES),
      runCases(ours.path, NO_OOB_CASES),
    ]);
    compare(NO_OOB_CASES, qemu, mine);
  },
});
