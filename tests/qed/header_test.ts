import assert from "node:assert/strict";
import {
  decodeHeader,
  encodeHeader,
  QED_F_BACKING_FILE,
  QED_F_BACKING_FORMAT_NO_PROBE,
  QED_FEATURE_MASK,
  QED_MAGIC,
  QedFormatError,
  qedGeometry,
  type QedHeader,
  qedMaxImageSize,
  validateHeader,
} from "../../qed/mod.ts";

function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, "");
  return Uint8Array.from(clean.match(/../g)!.map((b) => parseInt(b, 16)));
}

/** §4: header of `qemu-img create -f qed a.qed 10M`. */
const PLAIN_10M = hex(`
  5145 4400 0000 0100 0400 0000 0100 0000
  0000 0000 0000 0000 0000 0000 0000 0000
  0000 0000 0000 0000 0000 0100 0000 0000
  0000 a000 0000 0000 0000 0000 0000 0000`);

/** §4: header of `qemu-img create -f qed -b base.raw -F raw ov.qed` over a 4 MiB base. */
const RAW_BACKED = hex(`
  5145 4400 0000 0100 0400 0000 0100 0000
  0500 0000 0000 0000 0000 0000 0000 0000
  0000 0000 0000 0000 0000 0100 0000 0000
  0000 4000 0000 0000 4000 0000 0800 0000`);

function header(over: Partial<QedHeader> = {}): QedHeader {
  return {
    magic: QED_MAGIC,
    clusterSize: 65536,
    tableSize: 4,
    headerSize: 1,
    features: 0n,
    compatFeatures: 0n,
    autoclearFeatures: 0n,
    l1TableOffset: 65536,
    imageSize: 10 * 1024 * 1024,
    backingFilenameOffset: 0,
    backingFilenameSize: 0,
    ...over,
  };
}

Deno.test("encodeHeader() writes the bytes qemu-img create writes (§4)", () => {
  assert.deepEqual(encodeHeader(header()), PLAIN_10M);
  assert.deepEqual(
    encodeHeader(header({
      features: QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE,
      imageSize: 4 << 20,
      backingFilenameOffset: 64,
      backingFilenameSize: 8,
    })),
    RAW_BACKED,
  );
});

Deno.test("decodeHeader() reads qemu's headers, also through a view with a byteOffset", () => {
  assert.deepEqual(decodeHeader(PLAIN_10M), header());
  const padded = new Uint8Array(100);
  padded.set(RAW_BACKED, 13);
  const h = decodeHeader(padded.subarray(13));
  assert.equal(h.features, 5n);
  assert.equal(h.imageSize, 4 << 20);
  assert.equal(h.backingFilenameOffset, 64);
  assert.equal(h.backingFilenameSize, 8);
});

Deno.test("decodeHeader() keeps 64-bit feature bits and round-trips", () => {
  const h = header({
    features: 0x8000_0000_0000_0001n,
    compatFeatures: 0x30n,
    autoclearFeatures: 1n << 63n,
  });
  assert.deepEqual(decodeHeader(encodeHeader(h)), h);
});

Deno.test("decodeHeader() refuses fewer than 64 bytes", () => {
  assert.throws(() => decodeHeader(new Uint8Array(63)), {
    name: "QedFormatError",
    message: "Failed to read QED header",
  });
});

Deno.test("qedMaxImageSize() wraps like qemu's unsigned 64-bit product", () => {
  assert.equal(qedMaxImageSize(65536, 4), 2 ** 46);
  assert.equal(qedMaxImageSize(4096, 1), 2 ** 30);
  assert.equal(qedMaxImageSize(67108864, 16), 0);
  assert.equal(qedMaxImageSize(8 << 20, 2), 0);
  assert.equal(qedMaxImageSize(8 << 20, 1), 2 ** 63);
});

Deno.test("qedGeometry() derives qemu's shifts and masks", () => {
  const g = qedGeometry({ clusterSize: 65536, tableSize: 4, headerSize: 1 });
  assert.equal(g.tableNelems, 32768);
  assert.equal(g.l2Shift, 16);
  assert.equal(g.l1Shift, 31);
  assert.equal(g.l2Mask, 0x7fff);
  assert.equal(g.l2Span, 2 ** 31);
  assert.equal(g.tableBytes, 262144);
});

/** Each case breaks one check; the expected message is qemu 7.2's. */
const INVALID: [string, Partial<QedHeader>, string][] = [
  ["magic", { magic: 0x00444552 }, "Image not in QED format"],
  ["unknown feature", { features: 0x08n }, "Unsupported QED features: 8"],
  ["unknown high features", { features: 0x1_0000_0009n }, "Unsupported QED features: 100000008"],
  ["cluster size not a power of 2", { clusterSize: 65537 }, "QED cluster size is invalid"],
  ["cluster size too small", { clusterSize: 2048 }, "QED cluster size is invalid"],
  ["cluster size too large", { clusterSize: 1 << 27 }, "QED cluster size is invalid"],
  ["table size 0", { tableSize: 0 }, "QED table size is invalid"],
  ["table size 32", { tableSize: 32 }, "QED table size is invalid"],
  ["table size 3", { tableSize: 3 }, "QED table size is invalid"],
  ["image size not a multiple of 512", { imageSize: 1000 }, "QED image size is invalid"],
  ["image size too large", { imageSize: 2 ** 46 + 512 }, "QED image size is invalid"],
  ["L1 unaligned", { l1TableOffset: 65536 + 512 }, "QED table offset is invalid"],
  ["L1 inside header", { l1TableOffset: 0 }, "QED table offset is invalid"],
  ["L1 past EOF", { l1TableOffset: 0x20000 }, "QED table offset is invalid"],
  ["header size too large", { headerSize: 65536 }, "QED table offset is invalid"],
  [
    "backing name outside the header",
    { features: 1n, backingFilenameOffset: 65530, backingFilenameSize: 7 },
    "QED backing filename offset is invalid",
  ],
];

Deno.test("validateHeader() fails with qemu's text for each broken field", () => {
  for (const [what, over, message] of INVALID) {
    assert.throws(
      () => validateHeader(header(over), 0x50000),
      (e) => e instanceof QedFormatError && e.message === message,
      what,
    );
  }
});

Deno.test("validateHeader() runs the checks in qemu's order", () => {
  // Everything wrong: the magic is reported first, then the features, ...
  const all = header({
    magic: 1,
    features: 0x10n,
    clusterSize: 3,
    tableSize: 3,
    imageSize: 1,
    l1TableOffset: 1,
  });
  const order = [
    "Image not in QED format",
    "Unsupported QED features: 10",
    "QED cluster size is invalid",
    "QED table size is invalid",
    "QED image size is invalid",
    "QED table offset is invalid",
  ];
  const fixes: Partial<QedHeader>[] = [
    { magic: QED_MAGIC },
    { features: 0n },
    { clusterSize: 65536 },
    { tableSize: 4 },
    { imageSize: 512 },
    { l1TableOffset: 65536 },
  ];
  let h = all;
  order.forEach((message, i) => {
    assert.throws(() => validateHeader(h, 0x50000), { message });
    h = { ...h, ...fixes[i] };
  });
  validateHeader(h, 0x50000);
});

Deno.test("validateHeader() accepts what qemu accepts, and table_size 1 (§14.1)", () => {
  validateHeader(header({ imageSize: 0 }), 0x50000);
  validateHeader(header({ imageSize: 2 ** 46 }), 0x50000);
  validateHeader(
    header({ features: QED_FEATURE_MASK, backingFilenameOffset: 64, backingFilenameSize: 100 }),
    0x50000,
  );
  validateHeader(header({ compatFeatures: 0xffn, autoclearFeatures: 0x30n }), 0x50000);
  // The header area may be larger, with the name anywhere inside it.
  validateHeader(
    header({
      headerSize: 2,
      l1TableOffset: 0x20000,
      features: 1n,
      backingFilenameOffset: 70000,
      backingFilenameSize: 8,
    }),
    0x60000,
  );
  // A trailing partial cluster does not count: the L1 table must end before the last whole cluster.
  assert.throws(() => validateHeader(header(), 0x50000 - 1), {
    message: "QED table offset is invalid",
  });
  // qemu checks the table offset before the header size: only a huge file reaches the latter.
  assert.throws(
    () => validateHeader(header({ headerSize: 65536, l1TableOffset: 2 ** 32 }), 2 ** 33),
    { name: "QedFormatError", message: "QED header size is too large" },
  );
  validateHeader(
    header({ tableSize: 1, clusterSize: 4096, l1TableOffset: 4096, imageSize: 1 << 20 }),
    8192,
  );
});
