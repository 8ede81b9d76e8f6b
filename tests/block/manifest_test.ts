import assert from "node:assert/strict";
import { JobRegistry } from "../../block/job_registry.ts";
import {
  buildManifest,
  ChecksumMismatchError,
  decodeManifest,
  encodeManifest,
  ManifestError,
  ManifestVerifier,
  verifyManifest,
} from "../../block/manifest.ts";
import { startStream } from "../../block/stream_job.ts";
import { memOverlay, patternBytes, readAll, templateNode } from "./_fixtures.ts";

const KiB = 1024;
const SIZE = 2 * 1024 * KiB + 12 * KiB; // a short last chunk
const good = patternBytes(SIZE, [{ length: 200 * KiB, fill: 3 }, { length: 70 * KiB, fill: 0 }]);
const BAD_AT = 5 * 65536; // a data chunk
const corrupt = good.slice();
corrupt[BAD_AT + 100] = corrupt[BAD_AT + 100]! ^ 0x40;

Deno.test("encodeManifest() and decodeManifest() round-trip; bad files are typed errors", async () => {
  const m = await buildManifest(templateNode(good).node);
  assert.equal(m.hashes.length, Math.ceil(SIZE / 65536) * 32);
  const file = encodeManifest(m);
  assert.deepEqual(decodeManifest(file), m);
  const code = (b: Uint8Array) => {
    try {
      decodeManifest(b);
      return "ok";
    } catch (e) {
      assert.ok(e instanceof ManifestError);
      return e.code;
    }
  };
  assert.equal(code(file.subarray(0, 10)), "MANIFEST_TRUNCATED");
  const magic = file.slice();
  magic[1] = 0;
  assert.equal(code(magic), "MANIFEST_BAD_MAGIC");
  const hash = file.slice();
  hash[70]! ^= 1;
  assert.equal(code(hash), "MANIFEST_BAD_CHECKSUM");
  const chunk = file.slice();
  new DataView(chunk.buffer).setUint32(16, 1000, true);
  assert.equal(code(chunk), "MANIFEST_BAD_CHUNK");
  assert.equal(code(file.subarray(0, file.length - 32)), "MANIFEST_TRUNCATED");
});

Deno.test("verifyManifest() finds the first mismatching chunk of an image", async () => {
  const m = await buildManifest(templateNode(good).node, { chunkSize: 65536 });
  assert.deepEqual(await verifyManifest(templateNode(good).node, m), {
    ok: true,
    chunks: Math.ceil(SIZE / 65536),
  });
  const r = await verifyManifest(templateNode(corrupt).node, m, { parallel: 1 });
  assert.equal(r.ok, false);
  assert.equal(r.firstMismatch, BAD_AT);
});

Deno.test("ManifestVerifier completes partly covered chunks from the chain", async () => {
  const m = await buildManifest(templateNode(good).node, { chunkSize: 65536 });
  const read = (o: number, b: Uint8Array) => Promise.resolve(b.set(good.subarray(o, o + b.length)));
  const v = new ManifestVerifier(m, read);
  await v.check(1000, good.subarray(1000, 70000));
  assert.equal(v.chunksChecked, 2);
  const wrong = corrupt.subarray(BAD_AT + 50, BAD_AT + 200);
  await assert.rejects(
    () => v.check(BAD_AT + 50, wrong),
    (e: unknown) =>
      e instanceof ChecksumMismatchError && e.offset === BAD_AT && e.message.includes(`${BAD_AT}`),
  );
});

Deno.test("a stream with a manifest catches a corrupted template chunk (on-error report)", async () => {
  const m = await buildManifest(templateNode(good).node);
  const base = templateNode(corrupt).node;
  const top = await memOverlay(base, { clusterSize: 65536 });
  const verifier = new ManifestVerifier(m, (o, b) => base.read(o, b));
  const job = startStream(new JobRegistry(), top, { jobId: "v", parallel: 1, verifier });
  await job.concluded;
  assert.equal(job.error, "Input/output error"); // qemu's text for the event
  assert.equal(job.checksumMismatch?.offset, BAD_AT);
  assert.match(job.checksumMismatch!.message, new RegExp(`template chunk at offset ${BAD_AT}`));
  assert.notEqual(top.backing, null, "the failed stream keeps the backing link");
  // The bad chunk never reached the overlay: it still reads through to the backing.
  assert.equal((await top.blockStatus(BAD_AT, 65536)).kind, "unallocated");
});

Deno.test("a stream with a manifest applies on-error ignore and stop to a mismatch", async () => {
  const m = await buildManifest(templateNode(good).node);
  for (const onError of ["ignore", "stop"] as const) {
    const base = templateNode(corrupt).node;
    const top = await memOverlay(base, { clusterSize: 65536 });
    const jobs = new JobRegistry();
    const events: string[] = [];
    jobs.on((e) => {
      if (e.event === "BLOCK_JOB_ERROR") events.push(`${e.data.action}`);
    });
    const verifier = new ManifestVerifier(m, (o, b) => base.read(o, b));
    const job = startStream(jobs, top, { jobId: "v", parallel: 2, verifier, onError });
    if (onError === "stop") {
      while (!job.userPaused) await new Promise((r) => setTimeout(r, 1));
      assert.deepEqual(events, ["stop"]);
      job.cancel({ force: true });
    }
    await job.concluded;
    if (onError === "ignore") {
      assert.deepEqual(events, ["ignore"]);
      assert.equal(job.error, "Input/output error");
      assert.equal(job.checksumMismatch?.offset, BAD_AT);
      assert.equal(job.currentProgress, SIZE, "ignore goes on to the end");
    }
  }
});

Deno.test("a stream with a manifest over the right template completes and verifies", async () => {
  const base = templateNode(good).node;
  const m = await buildManifest(base);
  const top = await memOverlay(base, { clusterSize: 65536 });
  const verifier = new ManifestVerifier(m, (o, b) => base.read(o, b));
  const job = startStream(new JobRegistry(), top, { jobId: "v", verifier });
  await job.concluded;
  assert.equal(job.error, undefined);
  assert.equal(top.backing, null);
  assert.deepEqual(await readAll(top), good);
  assert.equal((await verifyManifest(top, m)).ok, true);
});
