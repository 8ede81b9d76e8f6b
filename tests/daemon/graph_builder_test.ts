import assert from "node:assert/strict";
import { BlockGraph } from "../../block/graph.ts";
import { checkBlockdevOptions } from "../../daemon/blockdev_schema.ts";
import { GraphBuilder } from "../../daemon/graph_builder.ts";
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
