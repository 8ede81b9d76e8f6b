import assert from "node:assert/strict";
import {
  BlockJobStatus,
  blockJobWait,
  hasOneStepStream,
  ManageError,
  resolveDisk,
  streamDisk,
  StreamDiskFlags,
  streamDiskInfo,
} from "../../manage/mod.ts";
import { programsPresent, tempDir } from "../_tools.ts";
import {
  backingOf,
  DISK_SIZE,
  makeChain,
  sameContents,
  SERVER_KINDS,
  startServer,
} from "./_servers.ts";

const ignore = !programsPresent("qemu-img", "qemu-io", "qemu-storage-daemon");

for (const kind of SERVER_KINDS) {
  Deno.test({
    name: `[${kind}] streamDisk() START and STOP, streamDiskInfo() lists the active stream`,
    ignore,
    fn: async () => {
      await using dir = await tempDir();
      await makeChain(dir.path);
      await using server = await startServer(kind, dir.path);
      const conn = await server.connect();
      try {
        assert.deepEqual(await streamDiskInfo(conn), []);
        assert.equal(
          await streamDisk(conn, "ov", 0, StreamDiskFlags.START, { bandwidth: 1 }),
          0,
        );
        const [state, ...rest] = await streamDiskInfo(conn);
        assert.deepEqual(rest, []);
        assert.equal(state?.path, "ov");
        assert.equal(state?.size, DISK_SIZE);
        assert.ok(state.offset < DISK_SIZE);
        assert.equal(await streamDisk(conn, "ov", 0, StreamDiskFlags.STOP), 0);
        assert.deepEqual(await streamDiskInfo(conn), []);
        await assert.rejects(
          streamDisk(conn, "ov", 0, StreamDiskFlags.STOP),
          /disk ov does not have an active block job/,
        );
        await assert.rejects(
          streamDisk(conn, "ov", 0, StreamDiskFlags.START | StreamDiskFlags.STOP),
          (e) => e instanceof ManageError && e.code === "VIR_ERR_INVALID_ARG",
        );
        await assert.rejects(
          streamDisk(conn, "ov", DISK_SIZE + 1, StreamDiskFlags.ONE),
          /offset 4194305 is outside disk 'ov' \(size 4194304\)/,
        );
        // START again finishes the disk (skipping what the first stream copied).
        await streamDisk(conn, "ov", 0, StreamDiskFlags.START);
        assert.deepEqual(await blockJobWait(conn, "ov"), { status: BlockJobStatus.COMPLETED });
      } finally {
        await conn.close();
      }
      await server.stop();
      assert.equal(await backingOf(`${dir.path}/ov.qed`), undefined);
      assert.ok(await sameContents(`${dir.path}/ov.qed`, `${dir.path}/base.raw`));
    },
  });
}

Deno.test({
  name: "[qedstream] streamDisk() ONE walks the whole disk to an independent copy of the template",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    await makeChain(dir.path);
    await using server = await startServer("qedstream", dir.path);
    const conn = await server.connect();
    const offsets: number[] = [];
    try {
      assert.equal(await hasOneStepStream(conn), true);
      let offset = 0;
      while (offset < DISK_SIZE) {
        const next = await streamDisk(conn, "ov", offset, StreamDiskFlags.ONE);
        assert.ok(next > offset, `progress from ${offset}`);
        offsets.push(next);
        offset = next;
      }
      assert.equal(offset, DISK_SIZE);
      // The step that reached the end completed the stream: no backing file any more.
      assert.deepEqual((await resolveDisk(conn, "ov")).backingChain, []);
      assert.equal(await streamDisk(conn, "ov", DISK_SIZE, StreamDiskFlags.ONE), DISK_SIZE);
    } finally {
      await conn.close();
    }
    assert.ok(offsets.length >= DISK_SIZE / (512 << 10), `one piece at a time: ${offsets}`);
    await server.stop();
    assert.equal(await backingOf(`${dir.path}/ov.qed`), undefined);
    assert.ok(await sameContents(`${dir.path}/ov.qed`, `${dir.path}/base.raw`));
  },
});

Deno.test({
  name: "[qsd] streamDisk() ONE fails clearly: not supported by this hypervisor",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    await makeChain(dir.path);
    await using server = await startServer("qsd", dir.path);
    const conn = await server.connect();
    try {
      assert.equal(await hasOneStepStream(conn), false);
      await assert.rejects(streamDisk(conn, "ov", 0, StreamDiskFlags.ONE), (e: unknown) => {
        assert.ok(e instanceof ManageError);
        assert.equal(e.code, "VIR_ERR_NO_SUPPORT");
        assert.match(e.message, /not supported by this hypervisor/);
        return true;
      });
      // Nothing was started or changed.
      assert.deepEqual(await conn.execute("query-block-jobs"), []);
      assert.equal((await resolveDisk(conn, "ov")).backingChain.length, 1);
    } finally {
      await conn.close();
    }
  },
});
