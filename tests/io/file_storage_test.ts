import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { FileStorage } from "../../io/file_storage.ts";
import { StorageError } from "../../io/error.ts";
import { tempDir } from "../_tools.ts";

const MiB = 1024 * 1024;
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

Deno.test("FileStorage reads what it wrote, short at the end, and refuses writes when read-only", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/f`;
  const file = await FileStorage.open(path, { create: true });
  await file.write(10, new Uint8Array([1, 2, 3]));
  assert.equal(await file.size(), 13);
  const buf = new Uint8Array(8);
  assert.equal(await file.read(8, buf), 5);
  assert.deepEqual([...buf.subarray(0, 5)], [0, 0, 1, 2, 3]);
  await file.flush();
  await file.truncate(11);
  assert.equal(await file.size(), 11);
  await file.close();
  const ro = await FileStorage.open(path, { readOnly: true });
  await assert.rejects(ro.write(0, new Uint8Array(1)), { code: "STORAGE_READ_ONLY" });
  await ro.close();
  await assert.rejects(FileStorage.open(path, { create: true }), { code: "STORAGE_EEXIST" });
});

Deno.test("FileStorage write-behind starts one background flush per threshold, never more than one at once", async () => {
  await using dir = await tempDir();
  const file = await FileStorage.open(`${dir.path}/wb`, { create: true, writeBehind: 4 * MiB });
  const chunk = new Uint8Array(MiB).fill(7);
  for (let i = 0; i < 3; i++) await file.write(i * MiB, chunk);
  assert.equal(file.backgroundFlushes, 0, "below the threshold nothing is flushed");
  await file.write(3 * MiB, chunk);
  assert.equal(file.backgroundFlushes, 1);
  // Writes while it runs do not start another one.
  for (let i = 4; i < 12; i++) await file.write(i * MiB, chunk);
  assert.equal(file.backgroundFlushes, 1);
  // Once the event loop has run the flush's completion, the next threshold starts one again.
  while (file.backgroundFlushes === 1) {
    await turn();
    await file.write(12 * MiB, chunk);
  }
  assert.equal(file.backgroundFlushes, 2);
  await file.flush();
  await file.close(); // waits for a background flush still running
  const back = await FileStorage.open(`${dir.path}/wb`, { readOnly: true });
  const buf = new Uint8Array(MiB);
  await back.read(11 * MiB, buf);
  assert.deepEqual(buf, chunk);
  await back.close();
});

Deno.test("FileStorage without write-behind never flushes on its own", async () => {
  await using dir = await tempDir();
  const file = await FileStorage.open(`${dir.path}/plain`, { create: true });
  for (let i = 0; i < 8; i++) {
    await file.write(i * MiB, new Uint8Array(MiB));
    await turn();
  }
  assert.equal(file.backgroundFlushes, 0);
  await file.close();
});

Deno.test("FileStorage refuses a write-behind that is not a byte count", async () => {
  await using dir = await tempDir();
  for (const writeBehind of [-1, 1.5, Number.NaN]) {
    await assert.rejects(
      FileStorage.open(`${dir.path}/x`, { create: true, writeBehind }),
      (e: unknown) => e instanceof StorageError && e.code === "STORAGE_BAD_OPTION",
    );
  }
});
