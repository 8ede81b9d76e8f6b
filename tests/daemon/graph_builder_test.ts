import assert from "node:assert/strict";
import { BlockGraph } from "../../block/graph.ts";
import { checkBlockdevOptions } from "../../daemon/blockdev_schema.ts";
import { GraphBuilder } from "../../daemon/graph_builder.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import { startStream } from "../../block/stream_job.ts";
import { parseKeyval } from "../../daemon/keyval.ts";
import { programsPresent, runOk, tempDir } from "../_tools.ts";

const blockdev = (text: string) => checkBlockdevOptions(parseKeyval(text, "driver"), true);

Deno.test({
  name: "GraphBuilder opens file and qed nodes with the backing chain from the header",
  ignore: !programsPresent("qemu-img", "qemu-io"),
  async fn() {
    await using dir = await tempDir();
    const base = `${dir.path}/base.raw`;
    await Deno.writeFile(base, new Uint8Array(1 << 20).fill(0x5a));
    await runOk("qemu-img", [
      "create",
      "-q",
      "-f",
      "qed",
      "-b",
      "base.raw",
      "-F",
      "raw",
      `${dir.path}/ov.qed`,
    ]);
    await runOk("qemu-io", ["-c", "write -P 0xab 64k 4k", `${dir.path}/ov.qed`]);
    const graph = new BlockGraph();
    const builder = new GraphBuilder(graph);
    try {
      await builder.add(blockdev(`driver=file,node-name=f0,filename=${dir.path}/ov.qed`));
      const ov = await builder.add(blockdev("driver=qed,node-name=ov,file=f0"));
      assert.equal(ov.driver, "qed");
      assert.equal(ov.backing?.driver, "raw");
      assert.match(ov.backing!.nodeName, /^#block\d+$/);
      const buf = new Uint8Array(8);
      await ov.read(64 * 1024 - 4, buf);
      assert.deepEqual([...buf], [0x5a, 0x5a, 0x5a, 0x5a, 0xab, 0xab, 0xab, 0xab]);
      await assert.rejects(
        builder.add(blockdev("driver=qed,node-name=ov,file=f0")),
        /Duplicate nodes with node-name='ov'/,
      );
      await assert.rejects(
        builder.add(blockdev("driver=qed,node-name=x,file=nope")),
        /Cannot find device='nope' nor node-name='nope'/,
      );
      const alone = await builder.add(
        blockdev(
          `driver=qed,node-name=alone,backing=null,file.driver=file,file.filename=${dir.path}/ov.qed,read-only=on`,
        ),
      );
      assert.equal(alone.backing, null);
      await alone.read(0, buf);
      assert.deepEqual([...buf], [0, 0, 0, 0, 0, 0, 0, 0]);
    } finally {
      await builder.close();
    }
    assert.equal(graph.nodes().length, 0);
    await runOk("qemu-img", ["check", `${dir.path}/ov.qed`]);
  },
});

/** The three children of iotest 030's TestQuorum: `img-N.img` over `backing-N.img` (0x55 in its first KiB). */
async function quorumImages(dir: string): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await runOk("qemu-img", ["create", "-q", "-f", "qed", `${dir}/backing-${i}.img`, "1M"]);
    await runOk("qemu-io", ["-f", "qed", "-c", "write -P 0x55 0 1024", `${dir}/backing-${i}.img`]);
    await runOk("qemu-img", [
      "create",
      "-q",
      "-f",
      "qed",
      "-b",
      `${dir}/backing-${i}.img`,
      "-F",
      "qed",
      `${dir}/img-${i}.img`,
    ]);
  }
}

const inlineChild = (dir: string, i: number) =>
  `children.${i}.driver=qed,children.${i}.file.driver=file,children.${i}.file.filename=${dir}/img-${i}.img,children.${i}.node-name=node${i}`;

Deno.test({
  name:
    "GraphBuilder opens a quorum before its inline children, as qemu names them, and releases them with it",
  ignore: !programsPresent("qemu-img", "qemu-io"),
  async fn() {
    await using dir = await tempDir();
    await quorumImages(dir.path);
    const graph = new BlockGraph();
    const builder = new GraphBuilder(graph);
    const events: unknown[] = [];
    graph.on((e) => events.push(e));
    try {
      const referenced = await builder.add(
        blockdev(`driver=file,node-name=f2,filename=${dir.path}/img-2.img`),
      );
      await builder.add(blockdev("driver=qed,node-name=q2,file=f2"));
      const quorum = await builder.add(blockdev(
        `driver=quorum,node-name=drive0,vote-threshold=2,${inlineChild(dir.path, 0)},${
          inlineChild(dir.path, 1)
        },children.2=q2`,
      ));
      assert.equal(quorum.driver, "quorum");
      assert.equal(quorum.size, 1 << 20);
      // q2 and its backing chain; then the quorum, and for each inline child its file, the
      // child, its backing file and backing format node (the automatic names count up).
      assert.deepEqual(
        graph.nodes().map((n) => n.nodeName.replace(/\d\d$/, "")),
        ["f2", "q2", "#block0", "#block1", "drive0"].concat(
          ["#block2", "node0", "#block3", "#block4", "#block5", "node1", "#block6", "#block7"],
        ),
      );
      const buf = new Uint8Array(2048);
      await quorum.read(0, buf);
      assert.ok(buf.subarray(0, 1024).every((b) => b === 0x55));
      assert.ok(buf.subarray(1024).every((b) => b === 0));
      assert.deepEqual(events, []);
      // One child now differs: outvoted and reported through the graph.
      await graph.getNode("node1")!.write(0, new Uint8Array(512).fill(1));
      await quorum.read(0, buf.subarray(0, 512));
      assert.equal(buf[0], 0x55);
      assert.deepEqual(events, [{
        event: "QUORUM_REPORT_BAD",
        data: { type: "read", "node-name": "node1", "sector-num": 0, "sectors-count": 1 },
      }]);
      await builder.remove("drive0");
      // Its inline children went with it; q2 (named) and q2's backing chain stay.
      assert.deepEqual(graph.nodes().map((n) => n.nodeName.replace(/\d\d$/, "")), [
        "f2",
        "q2",
        "#block0",
        "#block1",
      ]);
      assert.equal(referenced.readOnly, false);
    } finally {
      await builder.close();
    }
  },
});

Deno.test({
  name:
    "GraphBuilder checks a quorum's settings before opening children, and leaves nothing behind on failure",
  ignore: !programsPresent("qemu-img", "qemu-io"),
  async fn() {
    await using dir = await tempDir();
    await quorumImages(dir.path);
    await runOk("qemu-img", ["create", "-q", "-f", "qed", `${dir.path}/small.img`, "512K"]);
    const graph = new BlockGraph();
    const builder = new GraphBuilder(graph);
    const c0 = inlineChild(dir.path, 0);
    try {
      await assert.rejects(
        builder.add(blockdev(`driver=quorum,node-name=qu,vote-threshold=2,${c0},children.1=nope`)),
        /^BlockError: Cannot find device='nope' nor node-name='nope'$/,
      );
      await assert.rejects(
        builder.add(blockdev(`driver=quorum,node-name=qu,vote-threshold=3,${c0},children.1=nope`)),
        /^BlockError: threshold may not exceed children count$/,
      );
      await assert.rejects(
        builder.add(blockdev(
          `driver=quorum,node-name=qu,vote-threshold=1,${c0},children.1.driver=file,children.1.filename=${dir.path}/small.img`,
        )),
        /^BlockError: Could not refresh total sector count: Input\/output error$/,
      );
      await assert.rejects(
        builder.add(blockdev(
          `driver=quorum,node-name=node0,vote-threshold=1,${c0}`,
        )),
        /^BlockError: Duplicate nodes with node-name='node0'$/,
      );
      assert.deepEqual(graph.nodes(), []);
    } finally {
      await builder.close();
    }
  },
});

Deno.test({
  name:
    "GraphBuilder keeps a removed quorum's inline child while a job streams it, as qemu's references do",
  ignore: !programsPresent("qemu-img", "qemu-io"),
  async fn() {
    await using dir = await tempDir();
    await quorumImages(dir.path);
    const graph = new BlockGraph();
    const jobs = new JobRegistry();
    const builder = new GraphBuilder(graph, { jobs });
    const children = [0, 1, 2].map((i) => inlineChild(dir.path, i)).join(",");
    try {
      await builder.add(blockdev(`driver=quorum,node-name=drive0,vote-threshold=2,${children}`));
      const node0 = graph.getNode("node0")!;
      // One byte a second: the job parks after its first chunk.
      const job = startStream(jobs, node0, { jobId: "s0", speed: 1, graph });
      await builder.remove("drive0");
      assert.equal(graph.getNode("drive0"), undefined);
      assert.equal(graph.getNode("node0"), node0, "the job still uses node0");
      assert.ok(graph.nodes().some((n) => n.driver === "file" && n.filename.endsWith("img-0.img")));
      assert.equal(graph.getNode("node1"), undefined);
      assert.ok(!graph.nodes().some((n) => n.filename.endsWith("img-1.img")));
      job.cancel({ force: true });
      await job.concluded;
      // The nodes are closed once the job's last event has let go of them.
      for (let i = 0; i < 100 && graph.getNode("node0"); i++) {
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.deepEqual(graph.nodes(), []);
    } finally {
      await builder.close();
    }
  },
});
