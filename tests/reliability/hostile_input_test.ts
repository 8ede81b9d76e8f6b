/**
 * Hostile-input campaigns (issue 8, part 3), each with a count:
 *
 * - mutated QED images (header fields, L1/L2 entries, backing names, file
 *   length, need-check) through open (with its repair), read, write,
 *   write-zeroes, check, repair, close and reopen, on a storage that refuses
 *   any access outside a bound;
 * - random and mutated QMP input at a running `qedstream serve`;
 * - random and mutated NBD traffic at its export.
 *
 * Each: no crash, no hang, every rejection a typed {@linkcode QedstreamError}
 * with a message, memory bounded.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MemoryStorage } from "../../io/memory_storage.ts";
import { QedstreamError } from "../../io/error.ts";
import { QED_F_NEED_CHECK } from "../../qed/header.ts";
import { QedImage } from "../../qed/image.ts";
import { NbdClient } from "../../nbd/client.ts";
import { connectStream } from "../../nbd/transport.ts";
import { StreamReader, StreamWriter } from "../../nbd/stream.ts";
import { encodeClientFlags } from "../../nbd/handshake.ts";
import { encodeExportRequest, encodeOption } from "../../nbd/option.ts";
import { decodeOptionReplyHeader, OPTION_REPLY_HEADER_SIZE } from "../../nbd/option_reply.ts";
import * as P from "../../nbd/protocol.ts";
import { encodeRequest } from "../../nbd/request.ts";
import { Random } from "../../sim/random.ts";
import { programsPresent, seeds, tempDir } from "../_tools.ts";
import { assertTyped, BoundedStorage, count, report, within } from "./_campaign.ts";
import { qmpInput } from "./_qmp_fuzz.ts";
import { startServe } from "./_serve.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

// ---- QED images ------------------------------------------------------------

interface Sample {
  name: string;
  bytes: Uint8Array;
  base: Uint8Array | null;
}

function fill(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + seed) & 0xff;
  return out;
}

async function samples(): Promise<Sample[]> {
  const out: Sample[] = [];
  {
    const disk = new MemoryStorage();
    await QedImage.create(disk, { size: 2 * MiB, clusterSize: 4096, tableSize: 2 });
    const image = await QedImage.open(disk);
    await image.write(0, fill(100 * KiB, 1));
    await image.writeZeroes(256 * KiB, 128 * KiB);
    await image.write(MiB + 512, fill(70 * KiB, 2));
    await image.close();
    out.push({ name: "plain", bytes: disk.snapshot(), base: null });
  }
  {
    const base = fill(3 * MiB, 3);
    const disk = new MemoryStorage();
    await QedImage.create(disk, {
      size: 6 * MiB,
      clusterSize: 4096,
      tableSize: 2,
      backingFile: "base.raw",
      backingFormat: "raw",
    });
    const image = await QedImage.open(disk, {
      backing: {
        size: base.length,
        read: (o, b) => {
          b.set(base.subarray(o, o + b.length));
          return Promise.resolve();
        },
      },
    });
    await image.write(4 * KiB + 5, fill(30 * KiB, 4));
    await image.writeZeroes(64 * KiB, 16 * KiB);
    await image.write(4 * MiB - 6000, fill(12000, 5));
    await image.close();
    out.push({ name: "backed", bytes: disk.snapshot(), base });
  }
  return out;
}

const INTERESTING = [
  0n,
  1n,
  2n,
  511n,
  512n,
  4096n,
  4097n,
  8192n,
  0x10000n,
  0x50000n,
  0x50800n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 63n,
  2n ** 64n - 1n,
];

function pickValue(rng: Random, length: number): bigint {
  const r = rng.next();
  if (r < 0.5) return rng.pick(INTERESTING);
  if (r < 0.75) return BigInt(rng.int(0, Math.ceil(length / 4096) + 4) * 4096);
  return BigInt(rng.int(0, length * 2 + 1));
}

/** Applies 1–4 random mutations; returns the new bytes and what was done. */
function mutate(s: Sample, rng: Random): { bytes: Uint8Array; what: string[] } {
  let bytes = s.bytes.slice();
  const what: string[] = [];
  const n = rng.int(1, 5);
  for (let k = 0; k < n; k++) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const put64 = (at: number, v: bigint) => {
      if (at >= 0 && at + 8 <= bytes.length) view.setBigUint64(at, BigInt.asUintN(64, v), true);
    };
    const l1 = bytes.length >= 48 ? Number(view.getBigUint64(40, true)) : 0;
    const kind = rng.int(0, 9);
    switch (kind) {
      case 0: { // a 32-bit header field
        const at = rng.pick([4, 8, 12, 56, 60]);
        const v = Number(pickValue(rng, bytes.length) & 0xffffffffn);
        if (at + 4 <= bytes.length) view.setUint32(at, v, true);
        what.push(`u32@${at}=${v}`);
        break;
      }
      case 1: { // a 64-bit header field
        const at = rng.pick([16, 24, 32, 40, 48]);
        const v = pickValue(rng, bytes.length);
        put64(at, v);
        what.push(`u64@${at}=${v}`);
        break;
      }
      case 2: { // an L1 entry
        const i = rng.int(0, 4);
        const v = pickValue(rng, bytes.length);
        if (l1 < bytes.length) put64(l1 + i * 8, v);
        what.push(`l1[${i}]=${v}`);
        break;
      }
      case 3:
      case 4: { // an L2 entry of an existing table
        if (l1 + 8 > bytes.length) break;
        const l2 = Number(view.getBigUint64(l1 + rng.int(0, 2) * 8, true));
        const i = rng.int(0, 64);
        const v = pickValue(rng, bytes.length);
        if (l2 > 0 && l2 < bytes.length) put64(l2 + i * 8, v);
        what.push(`l2@${l2}[${i}]=${v}`);
        break;
      }
      case 5: { // the backing name: size, offset, bytes
        if (bytes.length < 128) break;
        view.setUint32(60, rng.pick([0, 3, 8, 100, 1023, 1024, 4095, 4096, 70000]), true);
        if (rng.chance(0.3)) view.setUint32(56, rng.pick([0, 64, 4000, 4096, 1 << 20]), true);
        const text = rng.pick(["../../etc/passwd", "/dev/zero", "a\u0000b", "é", "base.raw", ""]);
        bytes.set(new TextEncoder().encode(text).subarray(0, 64), 64);
        what.push(`name ${JSON.stringify(text)}`);
        break;
      }
      case 6: { // the file length
        const len = Math.max(0, bytes.length + rng.int(-70000, 70000));
        const out = new Uint8Array(len);
        out.set(bytes.subarray(0, Math.min(len, bytes.length)));
        bytes = out;
        what.push(`length ${len}`);
        break;
      }
      case 7: { // random bytes in the metadata area
        const at = rng.int(0, Math.min(bytes.length, 64 * KiB));
        if (at < bytes.length) bytes[at] = rng.int(0, 256);
        what.push(`byte@${at}`);
        break;
      }
      default: { // need-check, so a read-write open repairs
        if (bytes.length >= 24) {
          view.setBigUint64(16, view.getBigUint64(16, true) | QED_F_NEED_CHECK, true);
        }
        what.push("need-check");
      }
    }
  }
  return { bytes, what };
}

interface QedTotals {
  images: number;
  opened: number;
  rejectedAtOpen: number;
  operations: number;
  typedErrors: number;
  repaired: number;
}

/** Runs a step; a rejection must be typed. Returns undefined on rejection. */
async function step<T>(
  what: string,
  totals: QedTotals,
  f: () => Promise<T>,
): Promise<T | undefined> {
  totals.operations++;
  try {
    return await within(f(), 10_000, what);
  } catch (e) {
    if (e instanceof Error && e.message.includes("(hang)")) throw e;
    assertTyped(e, what);
    totals.typedErrors++;
    return undefined;
  }
}

async function hostileImage(s: Sample, rng: Random, totals: QedTotals, label: string) {
  const { bytes, what } = mutate(s, rng);
  const tag = `${label} ${s.name} [${what.join(", ")}]`;
  const storage = new BoundedStorage(new MemoryStorage(bytes), bytes.length + 64 * MiB);
  const backing = s.base
    ? {
      size: s.base.length,
      read(o: number, b: Uint8Array) {
        b.set(s.base!.subarray(o, o + b.length));
        return Promise.resolve();
      },
    }
    : null;
  totals.images++;
  const image = await step(`${tag} open`, totals, () => QedImage.open(storage, { backing }));
  if (!image) {
    totals.rejectedAtOpen++;
    assert.equal(storage.violations, 0, `${tag}: access outside the file`);
    return;
  }
  totals.opened++;
  const size = image.size;
  const at = () => size <= 1 ? 0 : rng.int(0, Math.max(1, Math.min(size, 8 * MiB)));
  const len = (pos: number) => Math.min(size - pos, rng.int(1, 96 * KiB));
  for (let i = 0; i < 6; i++) {
    const pos = at();
    const n = len(pos);
    if (n <= 0) continue;
    const r = rng.next();
    if (r < 0.4) await step(`${tag} read`, totals, () => image.read(pos, new Uint8Array(n)));
    else if (r < 0.75) {
      await step(`${tag} write`, totals, () => image.write(pos, new Uint8Array(n).fill(0xee)));
    } else if (r < 0.85) await step(`${tag} writeZeroes`, totals, () => image.writeZeroes(pos, n));
    else await step(`${tag} flush`, totals, () => image.flush());
  }
  await step(`${tag} check`, totals, () => image.check());
  const fixed = await step(`${tag} repair`, totals, () => image.check({ repair: "all" }));
  if (fixed && fixed.corruptionsFixed > 0) totals.repaired++;
  await step(`${tag} close`, totals, () => image.close());
  // Whatever the repair left must reopen (or be refused) cleanly.
  const again = await step(`${tag} reopen`, totals, () => QedImage.open(storage, { backing }));
  if (again) {
    await step(
      `${tag} read after reopen`,
      totals,
      () => again.read(0, new Uint8Array(Math.min(size, 64 * KiB))),
    );
    await step(`${tag} close after reopen`, totals, () => again.close());
  }
  assert.equal(storage.violations, 0, `${tag}: access outside the file`);
}

Deno.test("hostile QED images: open, read, write, check, repair and reopen never crash, hang or leave the file", async () => {
  const all = await samples();
  const totals: QedTotals = {
    images: 0,
    opened: 0,
    rejectedAtOpen: 0,
    operations: 0,
    typedErrors: 0,
    repaired: 0,
  };
  const rss0 = Deno.memoryUsage().rss;
  let peak = rss0;
  const per = count(5000, 100000);
  for (const seed of seeds()) {
    const rng = new Random(seed);
    for (let i = 0; i < per; i++) {
      await hostileImage(all[i % all.length]!, rng, totals, `seed ${seed} image ${i}`);
      if (i % 100 === 0) peak = Math.max(peak, Deno.memoryUsage().rss);
    }
  }
  const growthMiB = Math.round((peak - rss0) / MiB);
  report("hostile QED images", { ...totals, rssGrowthMiB: growthMiB });
  assert.ok(growthMiB < 512, `memory grew by ${growthMiB} MiB`);
  assert.ok(totals.opened > 0 && totals.rejectedAtOpen > 0);
});

// ---- QMP and NBD at a running server ------------------------------------------

/** Reads lines until one contains `marker`; every line must be a well-formed QMP message. */
async function linesUntil(
  conn: Deno.Conn,
  state: { buf: string; errors: number },
  marker: string,
  what: string,
) {
  const dec = new TextDecoder();
  const chunk = new Uint8Array(65536);
  for (;;) {
    let nl: number;
    while ((nl = state.buf.indexOf("\n")) >= 0) {
      const line = state.buf.slice(0, nl).trim();
      state.buf = state.buf.slice(nl + 1);
      if (!line) continue;
      const m = JSON.parse(line.replace(/\b(-?inf|nan)\b/g, "0"));
      assert.ok(
        "return" in m || "event" in m || "QMP" in m ||
          (typeof m.error?.class === "string" && typeof m.error?.desc === "string" &&
            m.error.desc.length > 0),
        `${what}: malformed line ${line}`,
      );
      if ("error" in m) state.errors++;
      if (line.includes(marker)) return;
    }
    const n = await conn.read(chunk);
    if (n === null) throw new Error(`${what}: the server closed the session`);
    state.buf += dec.decode(chunk.subarray(0, n), { stream: true });
  }
}

async function nbdSession(path: string, rng: Random, size: number): Promise<void> {
  const stream = await connectStream({ type: "unix", path });
  const reader = new StreamReader(stream);
  const writer = new StreamWriter(stream);
  try {
    if (rng.chance(0.2)) {
      const junk = new Uint8Array(rng.int(1, 400));
      for (let i = 0; i < junk.length; i++) junk[i] = rng.int(0, 256);
      await reader.readExact(18);
      await writer.write(junk);
    } else {
      await reader.readExact(18);
      await writer.write(encodeClientFlags(rng.chance(0.9) ? 3 : rng.int(0, 256)));
      const name = rng.chance(0.9) ? "d0" : rng.pick(["", "nope", "x".repeat(4096)]);
      await writer.write(
        encodeOption(P.NBD_OPT_GO, encodeExportRequest({ name, infoRequests: [] })),
      );
      for (;;) {
        const h = decodeOptionReplyHeader(await reader.readExact(OPTION_REPLY_HEADER_SIZE));
        await reader.readExact(h.length);
        if (h.type === P.NBD_REP_ACK) break;
        if (h.type >= 0x80000000) return;
      }
      for (let i = rng.int(1, 20); i > 0; i--) {
        const type = rng.pick([
          P.NBD_CMD_READ,
          P.NBD_CMD_WRITE,
          P.NBD_CMD_FLUSH,
          P.NBD_CMD_TRIM,
          P.NBD_CMD_CACHE,
          P.NBD_CMD_WRITE_ZEROES,
          P.NBD_CMD_BLOCK_STATUS,
          9,
          200,
        ]);
        const offset = rng.chance(0.8) ? rng.int(0, size) : rng.pick([size, size + 1, 2 ** 52]);
        const length = rng.chance(0.8) ? rng.int(0, 64 * KiB) : rng.pick([0, 2 ** 31, 2 ** 32 - 1]);
        const flags = rng.chance(0.8) ? 0 : rng.int(0, 1 << 16);
        const header = encodeRequest({ flags, type, cookie: BigInt(i), offset, length });
        if (type === P.NBD_CMD_WRITE && length <= 64 * KiB && rng.chance(0.8)) {
          await writer.write(header, new Uint8Array(length).fill(0xab));
        } else if (rng.chance(0.3)) {
          const cut = header.slice(0, rng.int(1, header.length));
          await writer.write(cut);
          break;
        } else await writer.write(header);
      }
      // Drain what the server answers, briefly.
      const buf = new Uint8Array(65536);
      await within(
        (async () => {
          const deadline = Date.now() + 20;
          while (Date.now() < deadline) {
            const n = await Promise.race([
              stream.read(buf),
              new Promise<null>((r) => setTimeout(() => r(null), 5)),
            ]);
            if (n === null) break;
          }
        })(),
        5000,
        "nbd drain",
      );
    }
  } catch (e) {
    // The server may hang up on us: that is a proper answer to garbage.
    if (
      !(e instanceof QedstreamError) && !(e instanceof Deno.errors.BrokenPipe) &&
      !(e instanceof Deno.errors.ConnectionReset) && !(e instanceof Deno.errors.BadResource)
    ) {
      throw e;
    }
  } finally {
    stream.close();
  }
}

Deno.test({
  name:
    "hostile QMP and NBD input at qedstream serve: it stays up, answers well-formed, memory bounded",
  ignore: !programsPresent("qemu-img"),
  fn: async () => {
    await using dir = await tempDir();
    const size = 4 * MiB;
    await using serve = await startServe(dir.path, fill(size, 9), 3);
    const totals = { qmpInputs: 0, qmpErrorReplies: 0, nbdSessions: 0, healthyReads: 0 };
    const rssStart = await serve.rssKiB();
    let rssPeak = rssStart;
    const qmpCount = count(4000, 100000);
    const nbdCount = count(1000, 20000);
    for (const seed of seeds()) {
      const rng = new Random(seed);
      const conn = await Deno.connect({ transport: "unix", path: serve.qmp });
      const state = { buf: "", errors: 0 };
      await linesUntil(conn, state, '"QMP"', "greeting");
      const enc = new TextEncoder();
      await conn.write(enc.encode('{"execute":"qmp_capabilities"}\n'));
      await linesUntil(conn, state, '"return"', "capabilities");
      for (let i = 0; i < qmpCount; i++) {
        const input = qmpInput(rng);
        if (new TextDecoder().decode(input).includes("quit")) continue;
        const marker = `"@m${seed}-${i}"`;
        await conn.write(input);
        await conn.write(enc.encode(`\x01\n{"execute":"query-version","id":${marker}}\n`));
        await within(linesUntil(conn, state, marker, `qmp input ${i}`), 10_000, `qmp input ${i}`);
        totals.qmpInputs++;
        if (i % 250 === 0) rssPeak = Math.max(rssPeak, await serve.rssKiB());
      }
      totals.qmpErrorReplies += state.errors;
      conn.close();
      for (let i = 0; i < nbdCount; i++) {
        await within(nbdSession(serve.nbd, rng, size), 10_000, `nbd session ${i}`);
        totals.nbdSessions++;
        if (i % 50 === 0) {
          const client = await NbdClient.connect({
            address: { type: "unix", path: serve.nbd },
            exportName: "d0",
          });
          await client.read(0, new Uint8Array(4096));
          await client.close();
          totals.healthyReads++;
          rssPeak = Math.max(rssPeak, await serve.rssKiB());
        }
      }
    }
    assert.ok(serve.alive(), "the server died");
    const rssEnd = await serve.rssKiB();
    report("hostile QMP + NBD at serve", {
      ...totals,
      rssStartMiB: Math.round(rssStart / 1024),
      rssPeakMiB: Math.round(rssPeak / 1024),
      rssEndMiB: Math.round(rssEnd / 1024),
    });
    assert.ok(rssPeak - rssStart < 400 * 1024, `server RSS grew ${rssPeak - rssStart} KiB`);
  },
});
