import assert from "node:assert/strict";
import fc from "fast-check";
import { BlockError } from "../../block/error.ts";
import type { BlockNode } from "../../block/node.ts";
import {
  checkQuorumSettings,
  type QuorumEvent,
  quorumNode,
  type QuorumNodeOptions,
} from "../../block/quorum.ts";
import { rawNode } from "../../block/raw_node.ts";
import { MemoryStorage } from "../../io/memory_storage.ts";
import { QedstreamError } from "../../io/error.ts";
import { RawImage } from "../../qed/raw_image.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import { startStream } from "../../block/stream_job.ts";
import { faultyNode, memOverlay, patternBytes, templateNode } from "./_fixtures.ts";

const SIZE = 64 * 1024;

/** A writable in-memory raw child named `name`, every byte `fill`. */
async function child(name: string, fill = 0, size = SIZE): Promise<BlockNode> {
  const image = await RawImage.open(new MemoryStorage(new Uint8Array(size).fill(fill)));
  return rawNode(image, { nodeName: name });
}

/** Children `c0`, `c1`, … with these fill bytes. */
function children(...fills: number[]): Promise<BlockNode[]> {
  return Promise.all(fills.map((f, i) => child(`c${i}`, f)));
}

/** A quorum over `kids` whose events land in the returned list. */
function quorum(
  kids: BlockNode[],
  options: Omit<QuorumNodeOptions, "nodeName" | "children">,
) {
  const events: QuorumEvent[] = [];
  const node = quorumNode({
    nodeName: "qu",
    children: kids,
    ...options,
    onEvent: (e) => events.push(e),
  });
  return { node, events };
}

/** Reads `length` bytes at `offset`; returns the first byte. */
async function readByte(node: BlockNode, offset = 0, length = 512): Promise<number> {
  const buf = new Uint8Array(length);
  await node.read(offset, buf);
  assert.ok(buf.every((b) => b === buf[0]), "the read is one version, not a mix");
  return buf[0]!;
}

/** `node` with writes (and write zeroes, flushes) failing with `code`. */
function failingWrites(node: BlockNode, code: "EIO" | "ENOSPC", ops = ["write", "flush"]) {
  const fail = () => Promise.reject(new QedstreamError(code, `injected ${code}`));
  return {
    ...Object.fromEntries(
      ["nodeName", "driver", "filename", "size", "readOnly", "backing"].map((k) => [
        k,
        node[k as keyof BlockNode],
      ]),
    ),
    read: (o: number, b: Uint8Array) => node.read(o, b),
    write: (o: number, d: Uint8Array) => ops.includes("write") ? fail() : node.write(o, d),
    writeZeroes: (o: number, n: number) => ops.includes("write") ? fail() : node.writeZeroes(o, n),
    flush: () => ops.includes("flush") ? fail() : node.flush(),
    blockStatus: (o: number, n: number) => node.blockStatus(o, n),
    close: () => node.close(),
  } as BlockNode;
}

/** A `QUORUM_REPORT_BAD` of a read (or of `type`), with `error` when the child failed. */
function bad(node: string, sector: number, count: number, error?: string, type = "read") {
  return {
    event: "QUORUM_REPORT_BAD",
    data: {
      type,
      ...(error === undefined ? {} : { error }),
      "node-name": node,
      "sector-num": sector,
      "sectors-count": count,
    },
  };
}

Deno.test("checkQuorumSettings() refuses what qemu refuses, with qemu-storage-daemon's texts", () => {
  const refused = (count: number, settings: Parameters<typeof checkQuorumSettings>[1], m: string) =>
    assert.throws(() => checkQuorumSettings(count, settings), (e: unknown) => {
      assert.ok(e instanceof BlockError);
      assert.equal(e.message, m);
      return true;
    });
  refused(0, { voteThreshold: 1 }, "Number of provided children must be 1 or more");
  refused(3, { voteThreshold: 0 }, "Parameter 'vote-threshold' expects a value >= 1");
  refused(3, { voteThreshold: -1 }, "Parameter 'vote-threshold' expects a value >= 1");
  refused(3, { voteThreshold: 4 }, "threshold may not exceed children count");
  refused(
    3,
    { voteThreshold: 2, blkverify: true },
    "blkverify=on can only be set if there are exactly two files and vote-threshold is 2",
  );
  refused(
    2,
    { voteThreshold: 2, blkverify: true, rewriteCorrupted: true },
    "rewrite-corrupted=on cannot be used with blkverify=on",
  );
  // With fifo qemu never reads blkverify or rewrite-corrupted.
  assert.deepEqual(
    checkQuorumSettings(3, {
      voteThreshold: 2,
      readPattern: "fifo",
      blkverify: true,
      rewriteCorrupted: true,
    }),
    { voteThreshold: 2, readPattern: "fifo", rewriteCorrupted: false, blkverify: false },
  );
});

Deno.test("quorumNode() refuses children of different sizes, as qemu's open does", async () => {
  await assert.rejects(
    async () =>
      quorumNode({
        nodeName: "qu",
        children: [await child("a"), await child("b", 0, SIZE / 2)],
        voteThreshold: 1,
      }),
    /^BlockError: Could not refresh total sector count: Input\/output error$/,
  );
});

Deno.test("a quorum read returns what every child agrees on, reporting nothing", async () => {
  const { node, events } = quorum(await children(5, 5, 5), { voteThreshold: 3 });
  assert.equal(node.size, SIZE);
  assert.equal(await readByte(node), 5);
  assert.deepEqual(events, []);
});

Deno.test("a quorum read outvotes a differing child and reports it (sectors of the request)", async () => {
  const { node, events } = quorum(await children(1, 1, 9), { voteThreshold: 2 });
  assert.equal(await readByte(node, 1024, 2048), 1);
  assert.deepEqual(events, [bad("c2", 2, 4)]);
});

Deno.test("a tie goes to the version first read by the highest child, losers reported newest first", async () => {
  // Versions A (c0, c2) and B (c1, c3): qemu lists B first and takes it; A's voters c2 then c0.
  const { node, events } = quorum(await children(0xa, 0xb, 0xa, 0xb), { voteThreshold: 2 });
  assert.equal(await readByte(node), 0xb);
  assert.deepEqual(events, [bad("c2", 0, 1), bad("c0", 0, 1)]);
});

Deno.test("a winner below the threshold fails the read with EIO and QUORUM_FAILURE", async () => {
  const { node, events } = quorum(await children(1, 2, 3), { voteThreshold: 2 });
  await assert.rejects(node.read(65536 - 512, new Uint8Array(512)), (e: unknown) => {
    assert.ok(e instanceof BlockError);
    assert.equal(e.code, "EIO");
    assert.equal(e.message, "Input/output error");
    return true;
  });
  assert.deepEqual(events, [{
    event: "QUORUM_FAILURE",
    data: { reference: "qu", "sector-num": 127, "sectors-count": 1 },
  }]);
});

Deno.test("children that fail to read are reported with their errno; enough others still win", async () => {
  const [c0, c1, c2] = await children(4, 4, 4);
  const broken = faultyNode(c1!, { offset: 0, length: 4096, code: "ENOSPC" });
  const { node, events } = quorum([c0!, broken, c2!], { voteThreshold: 2 });
  assert.equal(await readByte(node), 4);
  assert.deepEqual(events, [bad("c1", 0, 1, "No space left on device")]);
});

Deno.test("too few successful reads: QUORUM_FAILURE, and the errno most children failed with (ties to the later)", async () => {
  const [c0, c1, c2] = await children(4, 4, 4);
  const { node, events } = quorum([
    c0!,
    faultyNode(c1!, { offset: 0, length: 4096, code: "ENOSPC" }),
    faultyNode(c2!, { offset: 0, length: 4096, code: "EIO" }),
  ], { voteThreshold: 2 });
  await assert.rejects(node.read(0, new Uint8Array(512)), (e: unknown) => {
    assert.ok(e instanceof BlockError);
    assert.equal(e.code, "EIO");
    return true;
  });
  assert.deepEqual(events.map((e) => e.event), [
    "QUORUM_REPORT_BAD",
    "QUORUM_REPORT_BAD",
    "QUORUM_FAILURE",
  ]);
  assert.deepEqual(events.slice(0, 2).map((e) => (e.data as { error?: string }).error).sort(), [
    "Input/output error",
    "No space left on device",
  ]);
});

Deno.test("fifo reads the first child that answers and reports those that failed before it", async () => {
  const [c0, c1, c2] = await children(1, 2, 3);
  const { node, events } = quorum([
    faultyNode(c0!, { offset: 0, length: SIZE, code: "EIO" }),
    c1!,
    c2!,
  ], { voteThreshold: 2, readPattern: "fifo" });
  assert.equal(await readByte(node), 2); // no vote: c1's contents although they differ
  assert.deepEqual(events, [bad("c0", 0, 1, "Input/output error")]);
});

Deno.test("fifo fails with the last child's error when every child fails, without QUORUM_FAILURE", async () => {
  const [c0, c1] = await children(1, 1);
  const { node, events } = quorum([
    faultyNode(c0!, { offset: 0, length: SIZE, code: "EIO" }),
    faultyNode(c1!, { offset: 0, length: SIZE, code: "ENOSPC" }),
  ], { voteThreshold: 1, readPattern: "fifo" });
  await assert.rejects(node.read(0, new Uint8Array(512)), { code: "ENOSPC" });
  assert.deepEqual(events.map((e) => (e.data as { "node-name": string })["node-name"]), [
    "c0",
    "c1",
  ]);
});

Deno.test("rewrite-corrupted writes the winner into the outvoted children (and only with the option)", async () => {
  for (const rewriteCorrupted of [false, true]) {
    const kids = await children(7, 9, 7);
    const { node } = quorum(kids, { voteThreshold: 2, rewriteCorrupted });
    assert.equal(await readByte(node, 4096, 4096), 7);
    assert.equal(await readByte(kids[1]!, 4096, 4096), rewriteCorrupted ? 7 : 9);
    // Only the range read is rewritten.
    assert.equal(await readByte(kids[1]!, 0, 4096), 9);
  }
});

Deno.test("blkverify fails a read whose two children differ", async () => {
  const { node } = quorum(await children(1, 2), { voteThreshold: 2, blkverify: true });
  await assert.rejects(
    node.read(512, new Uint8Array(512)),
    /quorum: offset=512 bytes=512 contents mismatch at offset 512/,
  );
});

Deno.test("writes go to every child; a failing child is reported and enough others succeed", async () => {
  const [c0, c1, c2] = await children(0, 0, 0);
  const { node, events } = quorum([c0!, failingWrites(c1!, "EIO"), c2!], { voteThreshold: 2 });
  await node.write(512, new Uint8Array(1024).fill(6));
  await node.writeZeroes(0, 512);
  assert.equal(await readByte(c0!, 512, 1024), 6);
  assert.equal(await readByte(c2!, 512, 1024), 6);
  assert.equal(await readByte(c1!, 512, 1024), 0);
  assert.deepEqual(events, [
    bad("c1", 1, 2, "Input/output error", "write"),
    bad("c1", 0, 1, "Input/output error", "write"),
  ]);
});

Deno.test("a write below the threshold fails with the voted errno and QUORUM_FAILURE", async () => {
  const [c0, c1, c2] = await children(0, 0, 0);
  const { node, events } = quorum([
    c0!,
    failingWrites(c1!, "EIO"),
    failingWrites(c2!, "ENOSPC"),
  ], { voteThreshold: 2 });
  // qemu-storage-daemon answers the same ("No space left on device") for EIO from children.1, ENOSPC from children.2.
  await assert.rejects(node.write(0, new Uint8Array(512)), { code: "ENOSPC" });
  assert.deepEqual(events.at(-1), {
    event: "QUORUM_FAILURE",
    data: { reference: "qu", "sector-num": 0, "sectors-count": 1 },
  });
  assert.equal(events.filter((e) => e.event === "QUORUM_REPORT_BAD").length, 2);
});

Deno.test("flush goes to each child in turn; failures are reported as flush 0/0, never QUORUM_FAILURE", async () => {
  const [c0, c1, c2] = await children(0, 0, 0);
  const { node, events } = quorum([
    c0!,
    failingWrites(c1!, "EIO", ["flush"]),
    failingWrites(c2!, "ENOSPC", ["flush"]),
  ], { voteThreshold: 2 });
  await assert.rejects(node.flush(), { code: "ENOSPC" });
  assert.deepEqual(events, [
    bad("c1", 0, 0, "Input/output error", "flush"),
    bad("c2", 0, 0, "No space left on device", "flush"),
  ]);
  const { node: lenient } = quorum([c0!, failingWrites(c1!, "EIO", ["flush"])], {
    voteThreshold: 1,
  });
  await lenient.flush();
});

Deno.test("block status: zero while every child's chain reads zeros, data (longest run) once one has data", async () => {
  const a = await memOverlay(null, { nodeName: "a" });
  const b = await memOverlay(null, { nodeName: "b" });
  const { node } = quorum([a, b], { voteThreshold: 1 });
  assert.deepEqual(await node.blockStatus(0, SIZE), { kind: "zero", length: SIZE });
  await b.write(8192, new Uint8Array(4096).fill(1));
  assert.deepEqual(await node.blockStatus(8192, 8192), { kind: "data", length: 4096 });
  assert.deepEqual(await node.blockStatus(0, SIZE), { kind: "zero", length: 8192 });
  assert.equal(node.backing, null);
});

Deno.test("a request outside the quorum is refused without asking (or reporting) a child", async () => {
  const { node, events } = quorum(await children(0, 0), { voteThreshold: 2 });
  await assert.rejects(node.read(SIZE - 256, new Uint8Array(512)), { code: "OUT_OF_RANGE" });
  await assert.rejects(node.write(SIZE, new Uint8Array(1)), { code: "OUT_OF_RANGE" });
  await assert.rejects(node.blockStatus(SIZE, 1), { code: "OUT_OF_RANGE" });
  assert.deepEqual(events, []);
});

Deno.test("a read-only quorum refuses writes", async () => {
  const { node } = quorum(await children(0, 0), { voteThreshold: 1, readOnly: true });
  assert.equal(node.readOnly, true);
  await assert.rejects(node.write(0, new Uint8Array(1)), { code: "READ_ONLY" });
});

Deno.test("property: a read returns the most-voted version iff it has at least the threshold", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 6 }),
      async (fills, t) => {
        const threshold = Math.min(t, fills.length);
        const { node, events } = quorum(await children(...fills), { voteThreshold: threshold });
        // The model: qemu's tally (a new version in front, the first with strictly most votes wins).
        const order: number[] = [];
        for (const f of fills) if (!order.includes(f)) order.unshift(f);
        const votes = (f: number) => fills.filter((x) => x === f).length;
        const winner = order.reduce((w, f) => votes(f) > votes(w) ? f : w, order[0]!);
        const buf = new Uint8Array(512);
        const outcome = await node.read(0, buf).then(() => "ok", () => "failed");
        if (votes(winner) >= threshold) {
          assert.equal(outcome, "ok");
          assert.ok(buf.every((b) => b === winner));
          const losers = fills.filter((f) => f !== winner).length;
          assert.equal(events.length, losers);
        } else {
          assert.equal(outcome, "failed");
          assert.deepEqual(events.map((e) => e.event), ["QUORUM_FAILURE"]);
        }
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("streaming one child of a quorum keeps the quorum's reads whole (iotest 030's TestQuorum)", async () => {
  const bytes = patternBytes(SIZE * 4, [{ length: 3000, fill: 0x55 }, { length: 9000, fill: 0 }]);
  const kids: BlockNode[] = [];
  for (let i = 0; i < 3; i++) {
    const base = templateNode(bytes, `base${i}`, `backing-${i}.img`).node;
    kids.push(await memOverlay(base, { nodeName: `node${i}` }));
  }
  const { node, events } = quorum(kids, { voteThreshold: 2 });
  const jobs = new JobRegistry();
  const job = startStream(jobs, kids[0]!, { jobId: "stream-node0", chunkSize: 4096 });
  // Reads through the quorum while the job runs (copy-on-read into node0 through its filter).
  const buf = new Uint8Array(SIZE * 4);
  await node.read(0, buf);
  await job.concluded;
  assert.equal(job.status, "null");
  assert.equal(kids[0]!.backing, null);
  assert.notEqual(kids[1]!.backing, null);
  await node.read(0, buf);
  assert.deepEqual(buf, bytes);
  assert.deepEqual(events, []);
});
