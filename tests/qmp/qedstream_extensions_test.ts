import assert from "node:assert/strict";
import { BlockDevice } from "../../block/device.ts";
import { BlockGraph } from "../../block/graph.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import { buildManifest, encodeManifest } from "../../block/manifest.ts";
import { decodeWorkingSet, encodeWorkingSet } from "../../block/working_set.ts";
import { templateFingerprint } from "../../block/template_fingerprint.ts";
import { systemClock } from "../../io/clock.ts";
import { registerBlockCommands } from "../../qmp/block_commands.ts";
import { QmpClient } from "../../qmp/client.ts";
import { QmpError } from "../../qmp/error.ts";
import { registerQedstreamExtensions } from "../../qmp/qedstream_extensions.ts";
import { QmpServer } from "../../qmp/server.ts";
import { memoryTransportPair } from "../../qmp/transport.ts";
import { memOverlay, patternBytes, readAll, templateNode } from "../block/_fixtures.ts";

const KiB = 1024;
const SIZE = 2048 * KiB;

async function setup(template: Uint8Array, options: { extendBlockStream?: boolean } = {}) {
  const files = new Map<string, Uint8Array>();
  const graph = new BlockGraph();
  const jobs = new JobRegistry();
  const base = templateNode(template, "base").node;
  const top = await memOverlay(base, { clusterSize: 65536, nodeName: "ov" });
  graph.addNode(base);
  graph.addNode(top);
  const device = graph.addDevice(new BlockDevice(top, { name: "vda" }));
  const server = new QmpServer();
  registerBlockCommands(server, { graph, jobs, clock: systemClock });
  const stop = registerQedstreamExtensions(server, { graph, jobs, clock: systemClock }, {
    ...options,
    readFile: (p) => Promise.resolve(files.get(p) ?? Promise.reject(new Error("No such file"))),
    writeFile: (p, d) => Promise.resolve(void files.set(p, d)),
  });
  const [mine, theirs] = memoryTransportPair();
  void server.serve(theirs);
  const qmp = await QmpClient.connect({ transport: mine });
  return { files, base, top, device, qmp, stop, jobs };
}

const good = patternBytes(SIZE, [{ length: 100 * KiB, fill: 5 }, { length: 60 * KiB, fill: 0 }]);

Deno.test("__com.qedstream_record-working-set / stop-working-set record the reads that miss the overlay", async () => {
  const { files, base, device, qmp, stop } = await setup(good);
  await qmp.execute("__com.qedstream_record-working-set", { device: "vda", file: "boot.ws" });
  await device.read(1024 * KiB, new Uint8Array(8 * KiB));
  await device.read(0, new Uint8Array(4 * KiB));
  const r = await qmp.execute("__com.qedstream_stop-working-set", { device: "vda" });
  assert.deepEqual(r, { file: "boot.ws", ranges: 2, bytes: 12 * KiB });
  const ws = decodeWorkingSet(files.get("boot.ws")!);
  assert.deepEqual(ws.ranges, [{ offset: 1024 * KiB, length: 8 * KiB }, {
    offset: 0,
    length: 4 * KiB,
  }]);
  assert.deepEqual(ws.fingerprint, await templateFingerprint(base));
  await assert.rejects(
    () => qmp.execute("__com.qedstream_stop-working-set", { device: "vda" }),
    (e: unknown) => e instanceof QmpError && /No working set/.test(e.desc),
  );
  stop();
  await qmp.close();
});

Deno.test("__com.qedstream_block-stream streams a working set first, verified by a manifest", async () => {
  const { files, base, top, qmp } = await setup(good);
  files.set("t.manifest", encodeManifest(await buildManifest(base)));
  files.set(
    "boot.ws",
    encodeWorkingSet({
      templateSize: SIZE,
      fingerprint: await templateFingerprint(base),
      ranges: [{ offset: 1536 * KiB, length: 64 * KiB }],
    }),
  );
  const done = qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 10000 });
  assert.deepEqual(
    await qmp.execute("__com.qedstream_block-stream", {
      device: "vda",
      "working-set": "boot.ws",
      manifest: "t.manifest",
      "guest-first": true,
    }),
    {},
  );
  const ev = await done;
  assert.equal(ev.data?.error, undefined);
  assert.equal(ev.data?.offset, SIZE);
  assert.equal(top.backing, null);
  assert.deepEqual(await readAll(top), good);
  await qmp.close();
});

Deno.test("__com.qedstream_block-stream reports a corrupted template chunk as an I/O error", async () => {
  const bad = good.slice();
  bad[3 * 65536 + 7] = bad[3 * 65536 + 7]! ^ 1;
  const { files, qmp } = await setup(bad);
  // The manifest of the good template, with the bad template's fingerprint (only a data chunk differs).
  const m = await buildManifest(templateNode(good).node);
  m.fingerprint = await templateFingerprint(templateNode(bad).node);
  files.set("t.manifest", encodeManifest(m));
  const done = qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 10000 });
  const err = qmp.waitEvent("BLOCK_JOB_ERROR", { timeout: 10000 });
  const mismatch = qmp.waitEvent("__com.qedstream_CHECKSUM_MISMATCH", { timeout: 10000 });
  await qmp.execute("__com.qedstream_block-stream", { device: "vda", manifest: "t.manifest" });
  assert.deepEqual((await err).data, { device: "vda", operation: "read", action: "report" });
  const m2 = (await mismatch).data!;
  assert.equal(m2.device, "vda");
  assert.equal(m2.offset, 3 * 65536);
  assert.match(String(m2.desc), /Checksum mismatch: template chunk at offset 196608/);
  assert.equal((await done).data?.error, "Input/output error");
  await qmp.close();
});

Deno.test("__com.qedstream_block-stream refuses files of another template; block-stream can take the prefixed arguments", async () => {
  const { files, qmp } = await setup(good, { extendBlockStream: true });
  files.set(
    "other.ws",
    encodeWorkingSet({ templateSize: SIZE, fingerprint: new Uint8Array(32), ranges: [] }),
  );
  await assert.rejects(
    () => qmp.execute("__com.qedstream_block-stream", { device: "vda", "working-set": "other.ws" }),
    (e: unknown) =>
      e instanceof QmpError && e.class === "GenericError" && /another template/.test(e.desc),
  );
  await assert.rejects(
    () => qmp.execute("__com.qedstream_block-stream", { device: "vda", "working-set": "missing" }),
    (e: unknown) => e instanceof QmpError && /Could not read working set 'missing'/.test(e.desc),
  );
  const done = qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 10000 });
  await qmp.execute("block-stream", {
    device: "vda",
    "__com.qedstream_working-set-ranges": [{ offset: 0, length: 4096 }],
    "__com.qedstream_guest-first": true,
  });
  assert.equal((await done).data?.offset, SIZE);
  await qmp.close();
});
