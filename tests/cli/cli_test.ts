import assert from "node:assert/strict";
import { tempDir } from "../_tools.ts";
import { patchFile, qedstream, u64 } from "./_cli.ts";

/** The header of a fresh default QED image with no backing file, as qemu-img writes it. */
function expectHeader(
  bytes: Uint8Array,
  fields: { size: number; features?: number; bfSize?: number },
) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, 64);
  assert.equal(v.getUint32(0, true), 0x00444551);
  assert.equal(v.getUint32(4, true), 65536);
  assert.equal(v.getUint32(8, true), 4);
  assert.equal(v.getUint32(12, true), 1);
  assert.equal(Number(v.getBigUint64(16, true)), fields.features ?? 0);
  assert.equal(Number(v.getBigUint64(40, true)), 65536);
  assert.equal(Number(v.getBigUint64(48, true)), fields.size);
  assert.equal(v.getUint32(60, true), fields.bfSize ?? 0);
}

Deno.test("qedstream help, --version and unknown verbs", async () => {
  await using dir = await tempDir();
  const help = await qedstream(["--help"], dir.path);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^qedstream: /);
  assert.match(help.stdout, /create \[-q\] \[-f qed\|raw\]/);
  const version = await qedstream(["--version"], dir.path);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^qedstream version \d+\.\d+\.\d+/);
  const demo = await qedstream(["demo", "--help"], dir.path);
  assert.equal(demo.code, 0);
  assert.match(demo.stdout, /^Usage: qedstream demo/);
  const bad = await qedstream(["frobnicate"], dir.path);
  assert.equal(bad.code, 1);
  assert.equal(bad.stdout, "");
  assert.equal(bad.stderr, "qedstream: Command not found: frobnicate (try 'qedstream help')\n");
});

Deno.test("qedstream create writes qemu-img's line and header; refuses -b without -F", async () => {
  await using dir = await tempDir();
  const r = await qedstream(["create", "-f", "qed", "a.qed", "10M"], dir.path);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "Formatting 'a.qed', fmt=qed size=10485760 cluster_size=65536\n");
  assert.equal(r.stderr, "");
  const bytes = await Deno.readFile(`${dir.path}/a.qed`);
  assert.equal(bytes.length, 327680);
  expectHeader(bytes, { size: 10485760 });

  const raw = await qedstream(["create", "-f", "raw", "b.raw", "1000"], dir.path);
  assert.equal(raw.stdout, "Formatting 'b.raw', fmt=raw size=1000\n");
  assert.equal((await Deno.stat(`${dir.path}/b.raw`)).size, 1000);

  const noFmt = await qedstream(["create", "-b", "b.raw", "o.qed"], dir.path);
  assert.equal(noFmt.code, 1);
  assert.equal(noFmt.stdout, "");
  assert.equal(noFmt.stderr, "qedstream: o.qed: Backing file specified without backing format\n");

  // Without a size the backing file's size is used, rounded up to 512 as qemu sees it.
  const ov = await qedstream(["create", "-b", "b.raw", "-F", "raw", "o.qed"], dir.path);
  assert.equal(ov.code, 0, ov.stderr);
  assert.equal(
    ov.stdout,
    "Formatting 'o.qed', fmt=qed size=1024 backing_file=b.raw backing_fmt=raw cluster_size=65536\n",
  );
  const ovBytes = await Deno.readFile(`${dir.path}/o.qed`);
  expectHeader(ovBytes, { size: 1024, features: 5, bfSize: 5 });
  assert.equal(new TextDecoder().decode(ovBytes.subarray(64, 69)), "b.raw");
});

Deno.test("qedstream create errors are one line on stderr with a non-zero exit", async () => {
  await using dir = await tempDir();
  const cases: [string[], string, string][] = [
    [["create", "x.qed"], "", "qedstream: x.qed: Image creation needs a size parameter\n"],
    [["create"], "", "qedstream: Expecting image file name\n"],
    [
      ["create", "x.qed", "1.5"],
      "",
      "qedstream: Invalid image size specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n",
    ],
    [
      ["create", "-b", "missing.raw", "-F", "raw", "x.qed", "1M"],
      "",
      "qedstream: x.qed: Could not open 'missing.raw': No such file or directory\n",
    ],
    [
      ["create", "-b", "", "-F", "raw", "x.qed", "1M"],
      "",
      "qedstream: x.qed: Expected backing file name, got empty string\n",
    ],
    [
      ["create", "-f", "raw", "-b", "a", "-F", "raw", "x.raw", "1M"],
      "",
      "qedstream: x.raw: Backing file not supported for file format 'raw'\n",
    ],
    [
      ["create", "-o", "cluster_size=1000", "x.qed", "1M"],
      "Formatting 'x.qed', fmt=qed size=1048576 cluster_size=1000\n",
      "qedstream: x.qed: QED cluster size must be within range [4096, 67108864] and power of 2\n",
    ],
    [
      ["create", "x.qed", "100T"],
      "Formatting 'x.qed', fmt=qed size=109951162777600 cluster_size=65536\n",
      "qedstream: x.qed: QED image size must be a non-zero multiple of cluster size and less than 70368744177664 bytes\n",
    ],
  ];
  for (const [args, stdout, stderr] of cases) {
    const r = await qedstream(args, dir.path);
    assert.equal(r.code, 1, args.join(" "));
    assert.equal(r.stdout, stdout, args.join(" "));
    assert.equal(r.stderr, stderr, args.join(" "));
  }
});

Deno.test("qedstream io writes, reads and verifies patterns like qemu-io", async () => {
  await using dir = await tempDir();
  await qedstream(["create", "-q", "a.qed", "4M"], dir.path);
  const w = await qedstream(
    [
      "io",
      "a.qed",
      "-c",
      "write -P 0xab 4k 4k",
      "-c",
      "write -z 128k 128k",
      "-c",
      "read -P 0xab 4k 4k",
      "-c",
      "read -P 0 0 4k",
    ],
    dir.path,
  );
  assert.equal(w.code, 0, w.stderr);
  const lines = w.stdout.split("\n");
  assert.equal(lines[0], "wrote 4096/4096 bytes at offset 4096");
  assert.match(lines[1]!, /^4 KiB, 1 ops; \d\d\.\d\d sec \(.* ops\/sec\)$/);
  assert.equal(lines[2], "wrote 131072/131072 bytes at offset 131072");
  assert.equal(lines[4], "read 4096/4096 bytes at offset 4096");
  assert.equal(lines[6], "read 4096/4096 bytes at offset 0");
  assert.equal(w.stderr, "");

  const bad = await qedstream(
    [
      "io",
      "a.qed",
      "-c",
      "read -P 0xab 0 8k",
      "-c",
      "read 4M 4k",
      "-c",
      "bogus",
      "-c",
      "read -q 0 1",
    ],
    dir.path,
  );
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stderr,
    'Pattern verification failed at offset 0, 8192 bytes\nread failed: Input/output error\ncommand "bogus" not found\n',
  );
  assert.match(bad.stdout, /^read 8192\/8192 bytes at offset 0\n/);
  assert.equal(bad.stdout.split("\n").length, 3);

  const ro = await qedstream(["io", "-r", "a.qed", "-c", "write 0 1"], dir.path);
  assert.equal(ro.code, 1);
  assert.match(ro.stderr, /^write failed: .+\n$/);
});

Deno.test("qedstream info prints qemu-img info's text and JSON", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/sub`);
  await qedstream(["create", "-q", "-f", "raw", "base.raw", "4M"], dir.path);
  await qedstream(["create", "-q", "-b", "../base.raw", "-F", "raw", "sub/o.qed"], dir.path);
  const actual = ((await Deno.stat(`${dir.path}/sub/o.qed`)).blocks ?? 0) * 512;
  const human = await qedstream(["info", "sub/o.qed"], dir.path);
  assert.equal(human.code, 0, human.stderr);
  const kib = actual / 1024;
  assert.equal(
    human.stdout,
    `image: sub/o.qed
file format: qed
virtual size: 4 MiB (4194304 bytes)
disk size: ${kib} KiB
cluster_size: 65536
backing file: ../base.raw (actual path: sub/../base.raw)
backing file format: raw
`,
  );
  const json = await qedstream(["info", "--output", "json", "sub/o.qed"], dir.path);
  assert.equal(
    json.stdout,
    `{
    "backing-filename-format": "raw",
    "virtual-size": 4194304,
    "filename": "sub/o.qed",
    "cluster-size": 65536,
    "format": "qed",
    "actual-size": ${actual},
    "full-backing-filename": "sub/../base.raw",
    "backing-filename": "../base.raw",
    "dirty-flag": false
}
`,
  );
  const chain = await qedstream(
    ["info", "--backing-chain", "--output=json", "sub/o.qed"],
    dir.path,
  );
  const parsed = JSON.parse(chain.stdout);
  assert.deepEqual(parsed.map((i: { filename: string }) => i.filename), [
    "sub/o.qed",
    "sub/../base.raw",
  ]);
  assert.equal(parsed[1].format, "raw");

  // info does not open the backing file, so a missing one is no error (as in qemu-img).
  await Deno.remove(`${dir.path}/base.raw`);
  assert.equal((await qedstream(["info", "sub/o.qed"], dir.path)).code, 0);

  await Deno.writeTextFile(`${dir.path}/junk`, "hello\n");
  const junk = await qedstream(["info", "-f", "qed", "junk"], dir.path);
  assert.equal(junk.code, 1);
  assert.equal(junk.stderr, "qedstream: Could not open 'junk': Image not in QED format\n");
  const missing = await qedstream(["info", "nothere"], dir.path);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, "qedstream: Could not open 'nothere': No such file or directory\n");
});

Deno.test("qedstream check reports like qemu-img check: exit 0, 2, 3, 63 and repairs", async () => {
  await using dir = await tempDir();
  const p = (name: string) => `${dir.path}/${name}`;
  await qedstream(["create", "-q", "c.qed", "10M"], dir.path);
  const empty = await qedstream(["check", "c.qed"], dir.path);
  assert.equal(empty.code, 0);
  assert.equal(empty.stdout, "No errors were found on the image.\n");

  await qedstream(["io", "c.qed", "-c", "write -q 0 4k"], dir.path);
  const one = await qedstream(["check", "c.qed"], dir.path);
  assert.equal(one.code, 0);
  assert.equal(
    one.stdout,
    "No errors were found on the image.\n1/160 = 0.62% allocated, 0.00% fragmented, 0.00% compressed clusters\n",
  );

  // A leaked cluster: one cluster more at the end of the file.
  await Deno.copyFile(p("c.qed"), p("leak.qed"));
  await Deno.truncate(p("leak.qed"), (await Deno.stat(p("leak.qed"))).size + 65536);
  const leak = await qedstream(["check", "leak.qed"], dir.path);
  assert.equal(leak.code, 3);
  assert.equal(
    leak.stdout,
    "\n1 leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n" +
      "1/160 = 0.62% allocated, 0.00% fragmented, 0.00% compressed clusters\n",
  );
  assert.equal((await qedstream(["check", "-r", "leaks", "leak.qed"], dir.path)).code, 3);

  // An unaligned data offset in L2[0] (data at 0x50000, L2 table at 0x60000): a corruption.
  await Deno.copyFile(p("c.qed"), p("bad.qed"));
  await patchFile(p("bad.qed"), 0x60000, u64(0x50800));
  const bad = await qedstream(["check", "--output", "json", "bad.qed"], dir.path);
  assert.equal(bad.code, 2);
  assert.equal(
    bad.stdout,
    `{
    "total-clusters": 160,
    "corruptions": 1,
    "check-errors": 0,
    "leaks": 1,
    "allocated-clusters": 1,
    "filename": "bad.qed",
    "format": "qed"
}
`,
  );
  const fixed = await qedstream(["check", "-r", "all", "bad.qed"], dir.path);
  assert.equal(fixed.code, 3);
  assert.equal(
    fixed.stdout,
    "The following inconsistencies were found and repaired:\n\n    0 leaked clusters\n    1 corruptions\n\n" +
      "Double checking the fixed image now...\n\n" +
      "1 leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n",
  );
  assert.equal((await qedstream(["check", "bad.qed"], dir.path)).code, 3);

  await qedstream(["create", "-q", "-f", "raw", "r.raw", "1M"], dir.path);
  const raw = await qedstream(["check", "r.raw"], dir.path);
  assert.equal(raw.code, 63);
  assert.equal(raw.stderr, "qedstream: This image format does not support checks\n");
  const opt = await qedstream(["check", "-r", "foo", "c.qed"], dir.path);
  assert.equal(opt.code, 1);
  assert.equal(
    opt.stderr,
    "qedstream: Unknown option value for -r (expecting 'leaks' or 'all'): foo\n",
  );
});

Deno.test("qedstream map prints qemu-img map's entries through the chain", async () => {
  await using dir = await tempDir();
  await qedstream(["create", "-q", "-b", "b.qed", "-F", "qed", "-u", "o.qed", "4M"], dir.path);
  await qedstream(["create", "-q", "b.qed", "2M"], dir.path);
  await qedstream(["io", "b.qed", "-c", "write -q 1M 64k"], dir.path);
  await qedstream(["io", "o.qed", "-c", "write -q 0 64k", "-c", "write -q -z 128k 128k"], dir.path);
  const json = await qedstream(["map", "--output", "json", "o.qed"], dir.path);
  assert.equal(json.code, 0, json.stderr);
  assert.equal(
    json.stdout,
    `[{ "start": 0, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true, "offset": 327680},
{ "start": 65536, "length": 65536, "depth": 1, "present": false, "zero": true, "data": false},
{ "start": 131072, "length": 131072, "depth": 0, "present": true, "zero": true, "data": false},
{ "start": 262144, "length": 786432, "depth": 1, "present": false, "zero": true, "data": false},
{ "start": 1048576, "length": 65536, "depth": 1, "present": true, "zero": false, "data": true, "offset": 327680},
{ "start": 1114112, "length": 983040, "depth": 1, "present": false, "zero": true, "data": false},
{ "start": 2097152, "length": 2097152, "depth": 0, "present": false, "zero": true, "data": false}]
`,
  );
  const human = await qedstream(["map", "o.qed"], dir.path);
  assert.equal(
    human.stdout,
    `Offset          Length          Mapped to       File
0               0x10000         0x50000         o.qed
0x100000        0x10000         0x50000         b.qed
`,
  );
});

Deno.test("qedstream compare exits 0 identical, 1 different, 2 on error", async () => {
  await using dir = await tempDir();
  await qedstream(["create", "-q", "a.qed", "1M"], dir.path);
  await qedstream(["create", "-q", "-f", "raw", "a.raw", "1M"], dir.path);
  await qedstream(["create", "-q", "-f", "raw", "big.raw", "2M"], dir.path);
  await qedstream(["io", "a.qed", "-c", "write -q -P 7 1000 10"], dir.path);
  await qedstream(["io", "a.raw", "-c", "write -q -P 7 1000 10"], dir.path);
  const same = await qedstream(["compare", "a.qed", "a.raw"], dir.path);
  assert.equal(same.code, 0, same.stderr);
  assert.equal(same.stdout, "Images are identical.\n");
  await qedstream(["io", "a.raw", "-c", "write -q -P 8 70000 1"], dir.path);
  const diff = await qedstream(["compare", "a.qed", "a.raw"], dir.path);
  assert.equal(diff.code, 1);
  assert.equal(diff.stdout, "Content mismatch at offset 69632!\n");
  const size = await qedstream(["compare", "-f", "raw", "-F", "raw", "a.raw", "big.raw"], dir.path);
  assert.equal(size.code, 1);
  assert.equal(
    size.stdout,
    "Warning: Image size mismatch!\nContent mismatch at offset 1000!\n".replace("1000", "512"),
  );
  const strict = await qedstream(["compare", "-s", "a.qed", "big.raw"], dir.path);
  assert.equal(strict.code, 1);
  assert.equal(strict.stdout, "Strict mode: Image size mismatch!\n");
  const missing = await qedstream(["compare", "a.qed", "nothere"], dir.path);
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr, "qedstream: Could not open 'nothere': No such file or directory\n");
  const usage = await qedstream(["compare", "a.qed"], dir.path);
  assert.equal(usage.code, 2);
  assert.equal(usage.stderr, "qedstream: Expecting two image file names\n");
});

Deno.test("qedstream rebase -u changes and removes the backing name like qemu-img 7.2", async () => {
  await using dir = await tempDir();
  const p = `${dir.path}/o.qed`;
  await qedstream(["create", "-q", "-f", "raw", "base.raw", "1M"], dir.path);
  await qedstream(["create", "-q", "-b", "base.raw", "-F", "raw", "o.qed"], dir.path);
  const noFmt = await qedstream(["rebase", "-u", "-b", "new.raw", "o.qed"], dir.path);
  assert.equal(noFmt.code, 1);
  assert.equal(
    noFmt.stderr,
    "qedstream: Could not change the backing file to 'new.raw': backing format must be specified\n",
  );
  const set = await qedstream(["rebase", "-u", "-b", "new.raw", "-F", "raw", "o.qed"], dir.path);
  assert.equal(set.code, 0, set.stderr);
  assert.equal(set.stdout, "");
  let bytes = await Deno.readFile(p);
  expectHeader(bytes, { size: 1048576, features: 5, bfSize: 7 });
  assert.equal(new TextDecoder().decode(bytes.subarray(64, 72)), "new.raww");
  await qedstream(["rebase", "-u", "-b", "b.qed", "-F", "qed", "o.qed"], dir.path);
  expectHeader(await Deno.readFile(p), { size: 1048576, features: 1, bfSize: 5 });
  const removed = await qedstream(["rebase", "-u", "-b", "", "o.qed"], dir.path);
  assert.equal(removed.code, 0, removed.stderr);
  bytes = await Deno.readFile(p);
  expectHeader(bytes, { size: 1048576, features: 0, bfSize: 0 });
  assert.equal(new DataView(bytes.buffer).getUint32(56, true), 64);
  const info = await qedstream(["info", "o.qed"], dir.path);
  assert.doesNotMatch(info.stdout, /backing file/);
  const safe = await qedstream(["rebase", "-b", "x", "-F", "raw", "o.qed"], dir.path);
  assert.equal(safe.code, 1);
  assert.match(safe.stderr, /^qedstream: Only unsafe rebase \(-u\) is supported.*\n$/);
  const raw = await qedstream(["rebase", "-u", "-b", "x", "-F", "raw", "base.raw"], dir.path);
  assert.equal(raw.code, 1);
  assert.equal(
    raw.stderr,
    "qedstream: Could not change the backing file to 'x': Operation not supported\n",
  );
});
