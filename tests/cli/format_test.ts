import assert from "node:assert/strict";
import {
  checkExitCode,
  checkJsonObject,
  type CheckReport,
  formatCheckHuman,
  formatFixed2,
  formatRepairHuman,
} from "../../cli/check.ts";
import { formatCompareResult } from "../../cli/compare.ts";
import { formatCreateLine, parseCreateArgs } from "../../cli/create.ts";
import { describeError, openFailure } from "../../cli/error.ts";
import { formatInfoHuman, infoJsonObject } from "../../cli/info.ts";
import { formatHexDump, formatIoReport, parseIoCommand, parsePattern } from "../../cli/io.ts";
import { qemuJson } from "../../cli/json.ts";
import { formatMapHuman, formatMapJson, type MapEntry, mergeable } from "../../cli/map.ts";
import { combinePath } from "../../cli/open.ts";
import { parseRebaseArgs } from "../../cli/rebase.ts";
import { QedFormatError } from "../../qed/error.ts";
import { StorageError } from "../../io/error.ts";

Deno.test("parseCreateArgs() reads formats, backing, -o options and the size", () => {
  assert.deepEqual(
    parseCreateArgs([
      "-f",
      "qed",
      "-b",
      "b.raw",
      "-F",
      "raw",
      "-o",
      "cluster_size=4k,table_size=2",
      "o.qed",
      "1M",
    ]),
    {
      format: "qed",
      file: "o.qed",
      size: 1048576,
      backingFile: "b.raw",
      backingFormat: "raw",
      clusterSize: 4096,
      tableSize: 2,
      unsafe: false,
      quiet: false,
    },
  );
  const o = parseCreateArgs([
    "-o",
    "backing_file=b.qed,backing_fmt=qed",
    "-o",
    "size=2M",
    "-u",
    "x.qed",
  ]);
  assert.equal(o.backingFile, "b.qed");
  assert.equal(o.backingFormat, "qed");
  assert.equal(o.size, 2097152);
  assert.equal(o.unsafe, true);
});

Deno.test("parseCreateArgs() refuses what qemu-img refuses, with its text", () => {
  assert.throws(() => parseCreateArgs([]), /^CliError: Expecting image file name$/);
  assert.throws(
    () => parseCreateArgs(["x", "1.5"]),
    /Invalid image size specified\. You may use k, M, G, T, P or E suffixes/,
  );
  assert.throws(() => parseCreateArgs(["x", "abc"]), /Invalid image size specified/);
  assert.throws(() => parseCreateArgs(["-f", "vmdk", "x", "1M"]), /Unknown file format 'vmdk'/);
  assert.throws(() => parseCreateArgs(["-o", "foo=1", "x", "1M"]), /x: Invalid parameter 'foo'/);
  assert.throws(
    () => parseCreateArgs(["-f", "raw", "-o", "cluster_size=4k", "x", "1M"]),
    /Invalid parameter 'cluster_size'/,
  );
  assert.throws(
    () => parseCreateArgs(["-o", "cluster_size=abc", "x", "1M"]),
    /Parameter 'cluster_size' expects a non-negative number below 2\^64/,
  );
  assert.throws(() => parseCreateArgs(["x", "1M", "y"]), /Unexpected argument: y/);
  assert.throws(() => parseCreateArgs(["x", "16E"]), /Must be between 0 and/);
});

Deno.test("formatCreateLine() prints qemu-img's Formatting line", () => {
  assert.equal(
    formatCreateLine({ format: "qed", file: "a.qed", size: 10485760, unsafe: false }),
    "Formatting 'a.qed', fmt=qed size=10485760 cluster_size=65536",
  );
  assert.equal(
    formatCreateLine({
      format: "qed",
      file: "ov2.qed",
      size: 4194304,
      backingFile: "base.raw",
      backingFormat: "raw",
      clusterSize: 4096,
      tableSize: 2,
      unsafe: false,
    }),
    "Formatting 'ov2.qed', fmt=qed size=4194304 backing_file=base.raw backing_fmt=raw cluster_size=4096 table_size=2",
  );
  assert.equal(
    formatCreateLine({ format: "raw", file: "r.raw", size: 1048576, unsafe: false }),
    "Formatting 'r.raw', fmt=raw size=1048576",
  );
});

const clean: CheckReport = {
  filename: "ov.qed",
  format: "qed",
  totalClusters: 64,
  allocatedClusters: 1,
  fragmentedClusters: 0,
  corruptions: 0,
  leaks: 0,
  checkErrors: 0,
  corruptionsFixed: 0,
  leaksFixed: 0,
};

Deno.test("formatCheckHuman() prints qemu-img check's texts", () => {
  assert.equal(
    formatCheckHuman(clean),
    "No errors were found on the image.\n1/64 = 1.56% allocated, 0.00% fragmented, 0.00% compressed clusters\n",
  );
  assert.equal(
    formatCheckHuman({ ...clean, allocatedClusters: 0 }),
    "No errors were found on the image.\n",
  );
  assert.equal(
    formatCheckHuman({ ...clean, leaks: 2 }),
    "\n2 leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n" +
      "1/64 = 1.56% allocated, 0.00% fragmented, 0.00% compressed clusters\n",
  );
  assert.equal(
    formatCheckHuman({ ...clean, corruptions: 1, leaks: 1, allocatedClusters: 0 }),
    "\n1 errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n" +
      "\n1 leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n",
  );
  assert.equal(
    formatCheckHuman({ ...clean, checkErrors: 3, allocatedClusters: 0 }),
    "\n3 internal errors have occurred during the check.\n",
  );
  assert.equal(
    formatCheckHuman({ ...clean, allocatedClusters: 4, fragmentedClusters: 1 }),
    "No errors were found on the image.\n4/64 = 6.25% allocated, 25.00% fragmented, 0.00% compressed clusters\n",
  );
  assert.equal(
    formatRepairHuman(0, 1),
    "The following inconsistencies were found and repaired:\n\n    0 leaked clusters\n    1 corruptions\n\nDouble checking the fixed image now...\n",
  );
});

Deno.test("checkExitCode() is 0 clean, 1 check errors, 2 corruptions, 3 leaks", () => {
  assert.equal(checkExitCode(clean), 0);
  assert.equal(checkExitCode({ ...clean, leaks: 1 }), 3);
  assert.equal(checkExitCode({ ...clean, leaks: 1, corruptions: 1 }), 2);
  assert.equal(checkExitCode({ ...clean, corruptions: 1, checkErrors: 1 }), 1);
});

Deno.test("checkJsonObject() has qemu-img's keys, order and omissions", () => {
  assert.equal(
    qemuJson(
      checkJsonObject({
        ...clean,
        filename: "c.qed",
        totalClusters: 160,
        corruptions: 1,
        leaks: 1,
      }),
    ),
    `{
    "total-clusters": 160,
    "corruptions": 1,
    "check-errors": 0,
    "leaks": 1,
    "allocated-clusters": 1,
    "filename": "c.qed",
    "format": "qed"
}
`,
  );
  assert.equal(
    qemuJson(
      checkJsonObject({ ...clean, totalClusters: 16, allocatedClusters: 0, filename: "so.qed" }),
    ),
    `{
    "total-clusters": 16,
    "check-errors": 0,
    "filename": "so.qed",
    "format": "qed"
}
`,
  );
  assert.deepEqual(
    Object.keys(
      checkJsonObject({ ...clean, fragmentedClusters: 1, corruptionsFixed: 2, leaksFixed: 1 }),
    ),
    [
      "total-clusters",
      "corruptions-fixed",
      "check-errors",
      "leaks-fixed",
      "allocated-clusters",
      "filename",
      "format",
      "fragmented-clusters",
    ],
  );
});

Deno.test("formatInfoHuman() and infoJsonObject() follow qemu-img info", () => {
  const info = {
    filename: "sub/o.qed",
    format: "qed",
    virtualSize: 4194304,
    actualSize: 593920,
    clusterSize: 65536,
    backingFilename: "../base.raw",
    fullBackingFilename: "sub/../base.raw",
    backingFilenameFormat: "raw",
    dirty: false,
  };
  assert.equal(
    formatInfoHuman(info),
    `image: sub/o.qed
file format: qed
virtual size: 4 MiB (4194304 bytes)
disk size: 580 KiB
cluster_size: 65536
backing file: ../base.raw (actual path: sub/../base.raw)
backing file format: raw
`,
  );
  assert.equal(
    qemuJson(infoJsonObject(info)),
    `{
    "backing-filename-format": "raw",
    "virtual-size": 4194304,
    "filename": "sub/o.qed",
    "cluster-size": 65536,
    "format": "qed",
    "actual-size": 593920,
    "full-backing-filename": "sub/../base.raw",
    "backing-filename": "../base.raw",
    "dirty-flag": false
}
`,
  );
  const raw = { filename: "b.raw", format: "raw", virtualSize: 512, dirty: true };
  assert.equal(
    formatInfoHuman(raw),
    "image: b.raw\nfile format: raw\nvirtual size: 512 B (512 bytes)\ndisk size: unavailable\ncleanly shut down: no\n",
  );
  assert.deepEqual(Object.keys(infoJsonObject(raw)), [
    "virtual-size",
    "filename",
    "format",
    "dirty-flag",
  ]);
});

const entries: MapEntry[] = [
  {
    start: 0,
    length: 65536,
    depth: 0,
    present: true,
    zero: false,
    data: true,
    offset: 327680,
    filename: "ov.qed",
  },
  {
    start: 65536,
    length: 65536,
    depth: 1,
    present: true,
    zero: false,
    data: true,
    offset: 65536,
    filename: "base.raw",
  },
  { start: 131072, length: 131072, depth: 0, present: true, zero: true, data: false },
  { start: 262144, length: 3932160, depth: 1, present: false, zero: true, data: false },
];

Deno.test("formatMapJson() and formatMapHuman() print qemu-img map's layouts", () => {
  assert.equal(
    formatMapJson(entries),
    `[{ "start": 0, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true, "offset": 327680},
{ "start": 65536, "length": 65536, "depth": 1, "present": true, "zero": false, "data": true, "offset": 65536},
{ "start": 131072, "length": 131072, "depth": 0, "present": true, "zero": true, "data": false},
{ "start": 262144, "length": 3932160, "depth": 1, "present": false, "zero": true, "data": false}]
`,
  );
  assert.equal(
    formatMapHuman(entries),
    `Offset          Length          Mapped to       File
0               0x10000         0x50000         ov.qed
0x10000         0x10000         0x10000         base.raw
`,
  );
});

Deno.test("mergeable() joins only runs qemu-img would join", () => {
  const a = entries[0]!;
  assert.ok(mergeable(a, { ...a, start: 65536, offset: 393216 }));
  assert.ok(!mergeable(a, { ...a, start: 65536, offset: 458752 }));
  assert.ok(!mergeable(a, { ...a, start: 65536, offset: 393216, filename: "x" }));
  assert.ok(!mergeable(a, { ...a, start: 65536, offset: 393216, depth: 1 }));
  const z = entries[2]!;
  assert.ok(mergeable(z, { ...z, start: 262144 }));
  assert.ok(!mergeable(z, { ...z, start: 262144, present: false }));
  assert.ok(!mergeable({ ...z, length: 0 }, z));
});

Deno.test("formatCompareResult() prints qemu-img compare's lines", () => {
  assert.equal(
    formatCompareResult({ kind: "identical", sizeMismatch: false }),
    "Images are identical.\n",
  );
  assert.equal(
    formatCompareResult({ kind: "identical", sizeMismatch: true }),
    "Warning: Image size mismatch!\nImages are identical.\n",
  );
  assert.equal(
    formatCompareResult({ kind: "mismatch", offset: 512, sizeMismatch: false }),
    "Content mismatch at offset 512!\n",
  );
  assert.equal(
    formatCompareResult({ kind: "size-mismatch-strict" }),
    "Strict mode: Image size mismatch!\n",
  );
});

Deno.test("parseIoCommand() reads qemu-io's read and write commands", () => {
  assert.deepEqual(parseIoCommand("read 0 4k"), {
    op: "read",
    offset: 0,
    length: 4096,
    quiet: false,
    verbose: false,
  });
  assert.deepEqual(parseIoCommand("read -P 0xab 4k 4k"), {
    op: "read",
    offset: 4096,
    length: 4096,
    pattern: 0xab,
    quiet: false,
    verbose: false,
  });
  assert.deepEqual(parseIoCommand("  write  -P 17 0x10 1.5k "), {
    op: "write",
    offset: 16,
    length: 1536,
    pattern: 17,
    quiet: false,
  });
  assert.deepEqual(parseIoCommand("write 0 1"), {
    op: "write",
    offset: 0,
    length: 1,
    pattern: 0xcd,
    quiet: false,
  });
  assert.deepEqual(parseIoCommand("write -z -q 64k 128k"), {
    op: "write-zeroes",
    offset: 65536,
    length: 131072,
    quiet: true,
  });
});

Deno.test("parseIoCommand() refuses what qemu-io refuses, with its text", () => {
  assert.throws(() => parseIoCommand("bogus 0 1"), /^CliError: command "bogus" not found$/);
  assert.throws(
    () => parseIoCommand("read 0"),
    /bad argument count 1 to read, expected at least 2 arguments/,
  );
  assert.throws(
    () => parseIoCommand("read 1 2 3"),
    /^CliError: read \[-qv\] \[-P pattern\] off len/,
  );
  assert.throws(
    () => parseIoCommand("read x 4k"),
    /Parsing error: non-numeric argument, or extraneous\/unrecognized suffix -- x/,
  );
  assert.throws(() => parseIoCommand("read 0 1k5"), /suffix -- 1k5/);
  assert.throws(
    () => parseIoCommand("write -P 0xcd -z 0 64k"),
    /Only one of -z, -P, and -s can be specified at the same time/,
  );
  assert.throws(
    () => parseIoCommand("read 0 5000000000"),
    /length cannot exceed 2147483136, given 5000000000/,
  );
  assert.throws(() => parseIoCommand("read -P 300 0 1"), /300 is not a valid pattern byte/);
});

Deno.test("parsePattern() takes decimal, hexadecimal and octal bytes", () => {
  assert.equal(parsePattern("0"), 0);
  assert.equal(parsePattern("255"), 255);
  assert.equal(parsePattern("0xff"), 255);
  assert.equal(parsePattern("010"), 8);
  for (const bad of ["ab", "1k", "-1", "0x1ff", "256", ""]) {
    assert.throws(() => parsePattern(bad), new RegExp(`${bad} is not a valid pattern byte`));
  }
});

Deno.test("formatIoReport() and formatHexDump() print qemu-io's lines", () => {
  const [first, second] = formatIoReport({
    verb: "wrote",
    offset: 4096,
    length: 4096,
    elapsedMs: 2.5,
  }).split("\n");
  assert.equal(first, "wrote 4096/4096 bytes at offset 4096");
  assert.match(second!, /^4 KiB, 1 ops; 00\.00 sec \([0-9.]+ MiB\/sec and [0-9.]+ ops\/sec\)$/);
  assert.equal(
    formatHexDump(0, new Uint8Array(18).fill(0x41).fill(0x11, 16)),
    "00000000:  41 41 41 41 41 41 41 41 41 41 41 41 41 41 41 41  AAAAAAAAAAAAAAAA\n" +
      "00000010:  11 11  ..\n",
  );
});

Deno.test("parseRebaseArgs() applies qemu 7.2's rules", () => {
  assert.deepEqual(parseRebaseArgs(["-u", "-b", "n.raw", "-F", "raw", "o.qed"]), {
    file: "o.qed",
    backingFile: "n.raw",
    backingFormat: "raw",
  });
  assert.deepEqual(parseRebaseArgs(["-u", "o.qed"]), { file: "o.qed", backingFile: "" });
  assert.throws(
    () => parseRebaseArgs(["o.qed"]),
    /Must specify backing file \(-b\) or use unsafe mode \(-u\)/,
  );
  assert.throws(() => parseRebaseArgs(["-b", "x", "-F", "raw", "o.qed"]), /Only unsafe rebase/);
  assert.throws(
    () => parseRebaseArgs(["-u", "-b", "x", "-F", "foo", "o.qed"]),
    /Invalid format name: 'foo'/,
  );
});

Deno.test("combinePath() resolves backing names like qemu's path_combine", () => {
  assert.equal(combinePath("o.qed", "base.raw"), "base.raw");
  assert.equal(combinePath("sub/o.qed", "../base.raw"), "sub/../base.raw");
  assert.equal(combinePath("/tmp/qx/top.qed", "ov.qed"), "/tmp/qx/ov.qed");
  assert.equal(combinePath("sub/o.qed", "/abs/b.raw"), "/abs/b.raw");
});

Deno.test("describeError() gives one line: typed messages as they are, strerror for file errors", () => {
  assert.equal(
    describeError(new QedFormatError("QED_BAD_MAGIC", "Image not in QED format")),
    "Image not in QED format",
  );
  const enoent = Object.assign(new Error("ENOENT: no such file or directory, open 'x'"), {
    code: "ENOENT",
  });
  assert.equal(
    describeError(new StorageError("STORAGE_ENOENT", "Could not open 'x': …", { cause: enoent })),
    "No such file or directory",
  );
  assert.equal(describeError(new Error("two\n  lines")), "two lines");
  assert.equal(describeError("text"), "text");
  assert.equal(
    openFailure("x.qed", new QedFormatError("QED_BAD_MAGIC", "Image not in QED format")).message,
    "Could not open 'x.qed': Image not in QED format",
  );
});

Deno.test("formatFixed2() rounds exact ties to even like C's %.2f", () => {
  assert.equal(formatFixed2(0.625), "0.62");
  assert.equal(formatFixed2(0.375), "0.38");
  assert.equal(formatFixed2(1.5625), "1.56");
  assert.equal(formatFixed2(100), "100.00");
  assert.equal(formatFixed2(0), "0.00");
  assert.equal(formatFixed2(2.675), "2.67"); // the double is below 2.675
  assert.equal(formatFixed2(33.333333), "33.33");
});
