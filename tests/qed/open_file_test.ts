import assert from "node:assert/strict";
import { join } from "node:path";
import { FileStorage, MemoryStorage } from "../../io/mod.ts";
import {
  BackingChainError,
  openImageFile,
  probeFormat,
  QedImage,
  RawImage,
  resolveBackingPath,
} from "../../qed/mod.ts";
import { tempDir } from "../_tools.ts";
import { pattern } from "./_helpers.ts";

async function createQed(path: string, size: number, backingFile?: string, backingFormat?: string) {
  const s = await FileStorage.open(path, { create: true, truncate: true });
  await QedImage.create(s, {
    size,
    ...(backingFile ? { backingFile } : {}),
    ...(backingFormat ? { backingFormat } : {}),
  });
  await s.close();
}

Deno.test("probeFormat() tells QED from raw by the magic", async () => {
  const qed = new MemoryStorage();
  await QedImage.create(qed, { size: 4096 });
  assert.equal(await probeFormat(qed), "qed");
  assert.equal(await probeFormat(new MemoryStorage(new Uint8Array(10))), "raw");
  assert.equal(await probeFormat(new MemoryStorage()), "raw");
});

Deno.test("resolveBackingPath() resolves relative names against the overlay's folder", () => {
  assert.equal(resolveBackingPath("/d/sub/top.qed", "b.raw"), "/d/sub/b.raw");
  assert.equal(resolveBackingPath("/d/sub/top.qed", "../b.raw"), "/d/b.raw");
  assert.equal(resolveBackingPath("top.qed", "b.raw"), "b.raw");
  assert.equal(resolveBackingPath("/d/top.qed", "/abs/b.raw"), "/abs/b.raw");
});

Deno.test("openImageFile() opens a qed → qed → raw chain read-only below the top", async () => {
  await using dir = await tempDir();
  const base = pattern(3 << 20, 1);
  await Deno.writeFile(join(dir.path, "base.raw"), base);
  await Deno.mkdir(join(dir.path, "sub"));
  await createQed(join(dir.path, "sub", "mid.qed"), 3 << 20, "../base.raw", "raw");
  await createQed(join(dir.path, "top.qed"), 4 << 20, "sub/mid.qed", "qed");
  {
    const mid = await openImageFile(join(dir.path, "sub", "mid.qed"));
    await mid.image.write(65536, new Uint8Array(100).fill(7));
    await mid.close();
  }
  const top = await openImageFile(join(dir.path, "top.qed"));
  assert.equal(top.format, "qed");
  assert.equal(top.backing?.format, "qed");
  assert.equal(top.backing?.backing?.format, "raw");
  assert.equal(top.backing?.backing?.path, join(dir.path, "sub", "../base.raw"));
  assert.ok(top.backing?.image instanceof QedImage && top.backing.image.readOnly);
  const buf = new Uint8Array(200);
  await top.image.read(65536 - 50, buf);
  assert.deepEqual(buf.subarray(0, 50), base.subarray(65536 - 50, 65536));
  assert.ok(buf.subarray(50, 150).every((b) => b === 7));
  const tail = new Uint8Array(100);
  await top.image.read((4 << 20) - 100, tail);
  assert.ok(tail.every((b) => b === 0), "past the backing end reads zeros");
  await top.image.write(0, new Uint8Array(10).fill(9));
  await assert.rejects((top.backing!.image as QedImage).write(0, new Uint8Array(1)), {
    code: "QED_READ_ONLY",
  });
  await top.close();
  const unchained = await openImageFile(join(dir.path, "top.qed"), {
    readOnly: true,
    backing: false,
  });
  assert.equal(unchained.backing, null);
  assert.equal((unchained.image as QedImage).backing, null);
  await unchained.close();
});

Deno.test("openImageFile() reports a missing backing file with a typed error", async () => {
  await using dir = await tempDir();
  await createQed(join(dir.path, "top.qed"), 1 << 20, "gone.raw", "raw");
  await assert.rejects(openImageFile(join(dir.path, "top.qed")), (e) => {
    assert.ok(e instanceof BackingChainError);
    assert.equal(e.code, "QED_BACKING_MISSING");
    assert.equal(
      e.message,
      `Could not open backing file: Could not open '${
        join(dir.path, "gone.raw")
      }': No such file or directory`,
    );
    return true;
  });
});

Deno.test("openImageFile() refuses backing loops", async () => {
  await using dir = await tempDir();
  await createQed(join(dir.path, "a.qed"), 1 << 20, "b.qed", "qed");
  await createQed(join(dir.path, "b.qed"), 1 << 20, "a.qed", "qed");
  await createQed(join(dir.path, "self.qed"), 1 << 20, "self.qed", "qed");
  for (const name of ["a.qed", "self.qed"]) {
    await assert.rejects(openImageFile(join(dir.path, name), { readOnly: true }), {
      name: "BackingChainError",
      code: "QED_BACKING_LOOP",
    });
  }
});

Deno.test("openImageFile() opens raw files as RawImage and wraps a broken backing image's error", async () => {
  await using dir = await tempDir();
  await Deno.writeFile(join(dir.path, "r.raw"), new Uint8Array(8192).fill(3));
  const raw = await openImageFile(join(dir.path, "r.raw"));
  assert.ok(raw.image instanceof RawImage);
  assert.equal(raw.image.size, 8192);
  await raw.close();
  // A backing file that claims QED but is broken.
  const broken = new Uint8Array(100);
  broken.set([0x51, 0x45, 0x44, 0]);
  await Deno.writeFile(join(dir.path, "broken.qed"), broken);
  await createQed(join(dir.path, "top.qed"), 1 << 20, "broken.qed", "qed");
  await assert.rejects(openImageFile(join(dir.path, "top.qed")), {
    name: "BackingChainError",
    code: "QED_BACKING_OPEN",
    message: "Could not open backing file: QED cluster size is invalid",
  });
});
