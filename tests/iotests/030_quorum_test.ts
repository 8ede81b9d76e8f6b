/**
 * iotest 030 re-expressed, part 4: streaming one child of a quorum (qemu's
 * `TestQuorum`), on qemu-storage-daemon and on `qedstream serve` started
 * with the same command line; and the quorum's vote events as a client of
 * each server sees them.
 *
 * The quorum `drive0` (vote threshold 2) has three children `node0` to
 * `node2`, each a QED image `img-N.img` over `backing-N.img`, which holds
 * `0x55` in its first KiB. Streaming `node0` copies that KiB's cluster into
 * `img-0.img` and drops its backing file.
 */

import assert from "node:assert/strict";
import { run } from "../_tools.ts";
import { assertOk, backingOf, ioMap, iotest, qemuImg, qemuIo, type Vm } from "./_iotest.ts";

const CHILDREN = 3;

async function makeQuorum(dir: string): Promise<void> {
  for (let i = 0; i < CHILDREN; i++) {
    const backing = `${dir}/backing-${i}.img`;
    await qemuImg("create", "-q", "-f", "qed", backing, "1M");
    await qemuIo(backing, "qed", "write -P 0x55 0 1024");
    await qemuImg("create", "-q", "-f", "qed", "-b", backing, "-F", "qed", `${dir}/img-${i}.img`);
  }
}

/** qemu's iotest builds the quorum from `children.N.*` options, each child named `nodeN`. */
const QUORUM = [
  "driver=quorum,node-name=drive0,vote-threshold=2," +
  Array.from(
    { length: CHILDREN },
    (_, i) =>
      `children.${i}.driver=qed,children.${i}.file.driver=file,` +
      `children.${i}.file.filename=$DIR/img-${i}.img,children.${i}.node-name=node${i}`,
  ).join(","),
];

iotest("030 TestQuorum.test_stream_quorum: streaming one child of a quorum", {
  make: makeQuorum,
  blockdevs: QUORUM,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      assert.equal(await ioMap(`${d}/img-0.img`), await ioMap(`${d}/backing-0.img`));
      assert.equal(await backingOf(`${d}/img-0.img`), null);
      // The other children keep their backing files.
      assert.equal(await backingOf(`${d}/img-1.img`), `${d}/backing-1.img`);
    }
  },
}, async (vm) => {
  const dir = vm.dir;
  assert.notEqual(
    await ioMap(`${dir}/img-0.img`),
    await ioMap(`${dir}/backing-0.img`),
    "img-0 already maps like backing-0 before the stream",
  );
  await vm.assertNoJobs();
  // The quorum's json: filename, its summed actual-size and the children's chains, as qsd lists them.
  const nodes = (await vm.qmp("query-named-block-nodes", { flat: true })).return as {
    drv: string;
    file: string;
  }[];
  assert.equal(nodes[nodes.length - 1]?.drv, "quorum");
  assert.match(nodes[nodes.length - 1]!.file, /^json:\{"children": \[\{"driver": "qed"/);
  assertOk(await vm.qmp("block-stream", { device: "node0", "job-id": "stream-node0" }));
  const end = await vm.waitJobEnd("stream-node0");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  assert.equal(end.data.error, undefined);
  await vm.assertNoJobs();
});

/**
 * Three raw children: `c2` differs at 0, all three differ at 64 KiB, all
 * agree at 128 KiB. Every range read holds data: qsd's NBD server answers a
 * hole (a range every child reports as zeros) without reading, so no vote.
 */
async function makeVoters(dir: string): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const path = `${dir}/r${i}.raw`;
    await qemuImg("create", "-q", "-f", "raw", path, "1M");
    await qemuIo(path, "raw", `write -P ${i === 2 ? "0x22" : "0x11"} 0 4k`);
    await qemuIo(path, "raw", `write -P ${0x31 + i} 64k 4k`);
    await qemuIo(path, "raw", "write -P 0x44 128k 4k");
  }
}

const rawChild = (i: number, file: string) =>
  `children.${i}.driver=raw,children.${i}.node-name=c${i},${file}`;

/** A quorum exported over NBD; `c1` reads through blkdebug, which fails reads of sector 256 with ENOSPC. */
const VOTERS = [
  "driver=quorum,node-name=qu,vote-threshold=2," + [
    rawChild(0, "children.0.file.driver=file,children.0.file.filename=$DIR/r0.raw"),
    rawChild(
      1,
      "children.1.file.driver=blkdebug,children.1.file.image.driver=file," +
        "children.1.file.image.filename=$DIR/r1.raw,children.1.file.inject-error.0.event=read_aio," +
        "children.1.file.inject-error.0.sector=256,children.1.file.inject-error.0.errno=28",
    ),
    rawChild(2, "children.2.file.driver=file,children.2.file.filename=$DIR/r2.raw"),
  ].join(","),
];

/** Runs qemu-io over the quorum's NBD export; returns whether the command succeeded. */
async function nbdIo(vm: Vm, command: string): Promise<boolean> {
  const uri = `nbd+unix:///qu?socket=${vm.dir}/nbd.sock`;
  const r = await run("qemu-io", ["-f", "raw", "-c", command, uri]);
  return r.code === 0 && !/failed|error/i.test(r.stdout + r.stderr);
}

iotest(
  "quorum votes through an NBD export: QUORUM_REPORT_BAD and QUORUM_FAILURE as qsd sends them",
  {
    make: makeVoters,
    blockdevs: VOTERS,
    args: [
      "--nbd-server",
      "addr.type=unix,addr.path=$DIR/nbd.sock",
      "--export",
      "type=nbd,id=e0,node-name=qu,name=qu,writable=on",
    ],
  },
  async (vm) => {
    // c2 is outvoted: the majority's bytes, and a report without an error.
    assert.ok(await nbdIo(vm, "read -P 0x11 0 1k"));
    const outvoted = await vm.eventWait("QUORUM_REPORT_BAD");
    assert.deepEqual(outvoted.data, {
      type: "read",
      "node-name": "c2",
      "sector-num": 0,
      "sectors-count": 2,
    });
    // Throttling, per child: c2 outvoted twice more within a second of its first report; the
    // later report replaces the earlier one and goes out once the second has passed.
    assert.ok(await nbdIo(vm, "read -P 0x11 0 512"));
    assert.ok(await nbdIo(vm, "read -P 0x11 0 2k"));
    const held = await vm.eventWait("QUORUM_REPORT_BAD", { "node-name": "c2" }, 5000);
    assert.equal(held.data["sectors-count"], 4);
    assert.equal(vm.events.length, 2);
    // c1 fails (blkdebug), c0 and c2 still agree: the read succeeds, c1 is reported with its errno.
    assert.ok(await nbdIo(vm, "read -P 0x44 128k 512"));
    const failed = await vm.eventWait("QUORUM_REPORT_BAD", { "node-name": "c1" });
    assert.equal(failed.data.error, "No space left on device");
    // Three versions, none with two votes: the read fails.
    assert.equal(await nbdIo(vm, "read 64k 512"), false);
    const failure = await vm.eventWait("QUORUM_FAILURE");
    assert.deepEqual(failure.data, { reference: "qu", "sector-num": 128, "sectors-count": 1 });
  },
);
