/**
 * libvirt's view of block commit: `qedstream blockcommit` (manage/'s
 * `blockCommit` and `blockCommitWait`) against qemu-storage-daemon and
 * `qedstream serve` started with the same command line, on a second
 * monitor: virsh's texts, exit codes and the images afterwards.
 */

import assert from "node:assert/strict";
import { blockcommitCommand } from "../../cli/blockcommit.ts";
import { BufferedOutput } from "../../cli/output.ts";
import { assertSameData, backingOf, iotest, qemuImg, qemuIo, type Vm } from "./_iotest.ts";

async function makeChain(dir: string): Promise<void> {
  await qemuImg("create", "-q", "-f", "raw", `${dir}/base.raw`, "4M");
  await qemuIo(`${dir}/base.raw`, "raw", "write -P 0xaa 0 1M");
  await qemuImg(
    "create",
    "-q",
    "-f",
    "qed",
    "-b",
    `${dir}/base.raw`,
    "-F",
    "raw",
    `${dir}/mid.qed`,
  );
  await qemuIo(`${dir}/mid.qed`, "qed", "write -P 0xbb 1M 1M");
  await qemuImg("create", "-q", "-f", "qed", "-b", `${dir}/mid.qed`, "-F", "qed", `${dir}/top.qed`);
  await qemuIo(`${dir}/top.qed`, "qed", "write -P 0xcc 2M 512k");
  await qemuImg("convert", "-O", "raw", `${dir}/top.qed`, `${dir}/guest.raw`);
}

const setup = {
  make: makeChain,
  blockdevs: [
    "driver=file,node-name=fb,filename=$DIR/base.raw",
    "driver=raw,node-name=base,file=fb",
    "driver=file,node-name=fm,filename=$DIR/mid.qed",
    "driver=qed,node-name=mid,file=fm,backing=base",
    "driver=file,node-name=ft,filename=$DIR/top.qed",
    "driver=qed,node-name=top,file=ft,backing=mid",
  ],
  args: [
    "--chardev",
    "socket,id=m1,path=$DIR/mgmt.sock,server=on,wait=off",
    "--monitor",
    "chardev=m1",
  ],
};

async function virsh(vm: Vm, ...argv: string[]): Promise<[number, string, string]> {
  const out = new BufferedOutput();
  const code = await blockcommitCommand(
    [`unix:${vm.dir}/mgmt.sock`, ...argv.map((a) => a.split("$DIR").join(vm.dir))],
    out,
  );
  return [code, out.out, out.err];
}

iotest("blockcommit --top FILE --wait: an intermediate commit", {
  ...setup,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      await assertSameData(`${d}/top.qed`, `${d}/guest.raw`);
      assert.equal(await backingOf(`${d}/top.qed`), `${d}/base.raw`);
    }
  },
}, async (vm) => {
  assert.deepEqual(await virsh(vm, "top", "--top", "$DIR/mid.qed", "--wait"), [
    0,
    "\nCommit complete\n",
    "",
  ]);
});

iotest("blockcommit --active --pivot: the base takes the active layer's data", {
  ...setup,
  compare: async (q, o) => {
    for (const d of [q, o]) await assertSameData(`${d}/base.raw`, `${d}/guest.raw`);
  },
}, async (vm) => {
  const [code, out, err] = await virsh(vm, "top", "--active", "--pivot", "--verbose");
  assert.deepEqual([code, out], [0, "\nSuccessfully pivoted\n"]);
  assert.match(err, /^(\rActive Block Commit: \[[ \d]{3} %\])*\rActive Block Commit: \[100 %\]$/);
});

iotest("blockcommit: libvirt's refusals, the synchronised phase, keep-overlay", {
  ...setup,
}, async (vm) => {
  assert.deepEqual(await virsh(vm, "top"), [
    1,
    "",
    "error: invalid argument: commit of 'top' active layer requires active flag\n",
  ]);
  assert.deepEqual(await virsh(vm, "top", "--top", "$DIR/mid.qed", "--active"), [
    1,
    "",
    `error: invalid argument: active commit requested but '${vm.dir}/mid.qed' is not active\n`,
  ]);
  assert.deepEqual(await virsh(vm, "top", "--pivot"), [
    1,
    "",
    "error: Option --active is required by option --pivot\n",
  ]);
  assert.deepEqual(await virsh(vm, "top", "--active", "--wait"), [
    0,
    "\nNow in synchronized phase\n",
    "",
  ]);
  assert.deepEqual(await virsh(vm, "top", "--active"), [
    1,
    "",
    "error: Requested operation is not valid: disk 'top' already in active block job\n",
  ]);
  assert.equal((await vm.jobs())[0]?.status, "ready");
  assert.equal(
    (await vm.qmp("block-job-cancel", { device: "commit-top" })).return !== undefined,
    true,
  );
  const end = await vm.waitJobEnd("commit-top");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  await vm.assertNoJobs();
});
