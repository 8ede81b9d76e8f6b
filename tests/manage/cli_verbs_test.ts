import assert from "node:assert/strict";
import { main } from "../../cli.ts";
import { jobProgress } from "../../cli/_virsh.ts";
import { BufferedOutput } from "../../cli/output.ts";
import { programsPresent, tempDir } from "../_tools.ts";
import { qedstream } from "../cli/_cli.ts";
import {
  backingOf,
  DISK_SIZE,
  makeChain,
  sameContents,
  SERVER_KINDS,
  startServer,
} from "./_servers.ts";

const ignore = !programsPresent("qemu-img", "qemu-io", "qemu-storage-daemon");

/** Runs a verb in this process and returns its exit code and output. */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new BufferedOutput();
  const code = await main(argv, out);
  return { code, out: out.out, err: out.err };
}

Deno.test("jobProgress() computes virsh's percentage", () => {
  assert.equal(jobProgress("Block Pull", 0, 0), "");
  assert.equal(jobProgress("Block Pull", 0, 100), "\rBlock Pull: [100 %]");
  assert.equal(jobProgress("Block Pull", 55, 100), "\rBlock Pull: [ 45 %]");
  assert.equal(jobProgress("Block Pull", 1, 1000), "\rBlock Pull: [ 99 %]");
  assert.equal(jobProgress("Block Pull", 100, 100), "\rBlock Pull: [  0 %]");
});

Deno.test("virsh-like verbs check their options before connecting", async () => {
  const s = "unix:/nonexistent/qmp.sock";
  const cases: [string[], string][] = [
    [["blockpull", s], "error: command 'blockpull' requires <path> option\n"],
    [
      ["blockpull", s, "vda", "--verbose"],
      "error: Option --wait is required by option --verbose\n",
    ],
    [["blockpull", s, "vda", "--async"], "error: Option --wait is required by option --async\n"],
    [
      ["blockpull", s, "vda", "--frob"],
      "error: command 'blockpull' doesn't support option --frob\n",
    ],
    [
      ["blockpull", s, "vda", "--bandwidth", "x"],
      "error: Scaled numeric value 'x' for <--bandwidth> option is malformed or out of range\n",
    ],
    [
      ["blockpull", s, "vda", "--wait", "--timeout", "-1"],
      "error: Numeric value '-1' for <timeout> option is malformed or out of range\n",
    ],
    [
      ["blockjob", s, "vda", "--raw", "--abort"],
      "error: Options --raw and --abort are mutually exclusive\n",
    ],
    [
      ["blockjob", s, "vda", "--info", "--bandwidth", "1"],
      "error: Options --info and --bandwidth are mutually exclusive\n",
    ],
    [
      ["blockjob", s, "vda", "--bytes", "--abort"],
      "error: Options --bytes and --abort are mutually exclusive\n",
    ],
    [["streamdisk", s, "vda"], "error: One of --start, --stop, or --one is required\n"],
    [
      ["streamdisk", s, "vda", "--start", "--stop"],
      "error: One of --start, --stop, or --one is required\n",
    ],
    [
      ["blockjob", "bogus", "vda"],
      "error: Invalid socket address 'bogus': expected unix:PATH or tcp:HOST:PORT\n",
    ],
    [
      ["blockjob", s, "vda"],
      "error: Failed to connect socket to '/nonexistent/qmp.sock': No such file or directory\n",
    ],
  ];
  for (const [argv, err] of cases) {
    const r = await cli(...argv);
    assert.deepEqual(r, { code: 1, out: "", err }, argv.join(" "));
  }
});

for (const kind of SERVER_KINDS) {
  Deno.test({
    name: `[${kind}] blockpull and blockjob print virsh's texts`,
    ignore,
    fn: async () => {
      await using dir = await tempDir();
      await makeChain(dir.path);
      await using server = await startServer(kind, dir.path);
      const s = server.socket;

      assert.deepEqual(await cli("blockjob", s, "ov"), {
        code: 0,
        out: "No current block job for ov\n",
        err: "",
      });
      assert.deepEqual(await cli("blockjob", s, "ov", "--raw"), { code: 0, out: "", err: "" });
      const unknown = {
        code: 1,
        out: "",
        err: "error: invalid argument: disk 'vdz' not found in domain\n",
      };
      assert.deepEqual(await cli("blockjob", s, "vdz", "--info"), unknown);
      assert.deepEqual(await cli("blockpull", s, "vdz"), unknown);
      const noJob = {
        code: 1,
        out: "",
        err: "error: Requested operation is not valid: disk ov does not have an active block job\n",
      };
      assert.deepEqual(await cli("blockjob", s, "ov", "--abort"), noJob);
      assert.deepEqual(await cli("blockjob", s, "ov", "--bandwidth", "5"), noJob);

      // A throttled pull (1 MiB/s), re-throttled midway.
      assert.deepEqual(await cli("blockpull", s, `${dir.path}/ov.qed`, "--bandwidth", "1"), {
        code: 0,
        out: "Block Pull started\n",
        err: "",
      });
      assert.deepEqual(await cli("blockpull", s, "ov"), {
        code: 1,
        out: "",
        err: "error: Requested operation is not valid: disk 'ov' already in active block job\n",
      });
      const info = await cli("blockjob", s, "ov", "--info");
      assert.equal(info.code, 0);
      assert.equal(info.out, "    Bandwidth limit: 1048576 bytes/s (1.000 MiB/s)\n");
      assert.match(info.err, /^\rBlock Pull: \[ {0,2}\d{1,2} %\]$/);
      const raw = await cli("blockjob", s, "ov", "--raw");
      assert.match(raw.out, /^ type=Block Pull\n bandwidth=1\n cur=\d+\n end=4194304\n$/);
      assert.deepEqual(await cli("blockjob", s, "ov", "--bandwidth", "1536k", "--bytes"), {
        code: 0,
        out: "",
        err: "",
      });
      const bytes = await cli("blockjob", s, "ov", "--raw", "--bytes");
      assert.match(bytes.out, /^ type=Block Pull\n bandwidth=1572864\n/);
      assert.match((await cli("blockjob", s, "ov")).out, /\(1\.500 MiB\/s\)/);
      assert.match(
        (await cli("streamdiskinfo", s)).out,
        /^Streaming device ov: Completed \d+ of 4194304 bytes\n$/,
      );

      // Abort, synchronous: the job is gone when the verb returns.
      assert.deepEqual(await cli("blockjob", s, "ov", "--abort"), { code: 0, out: "", err: "" });
      assert.deepEqual(
        await cli("blockjob", s, "ov").then((r) => r.out),
        "No current block job for ov\n",
      );

      // Abort, asynchronous.
      await cli("blockpull", s, "ov", "--bandwidth", "1");
      assert.deepEqual(await cli("blockjob", s, "ov", "--async"), { code: 0, out: "", err: "" });
      const conn = await server.connect();
      try {
        for (
          let i = 0;
          i < 200 && ((await conn.execute("query-block-jobs")) as unknown[]).length;
          i++
        ) {
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.deepEqual(await conn.execute("query-block-jobs"), []);
      } finally {
        await conn.close();
      }

      // --wait --timeout: virsh aborts the job and says so, exit 1.
      const timedOut = await cli(
        "blockpull",
        s,
        "ov",
        "--bandwidth",
        "1",
        "--wait",
        "--verbose",
        "--timeout",
        "1",
      );
      assert.equal(timedOut.code, 1);
      assert.equal(timedOut.out, "\nPull aborted\n");
      assert.match(timedOut.err, /^(\rBlock Pull: \[ {0,2}\d{1,2} %\])+$/);
      assert.equal((await cli("blockjob", s, "ov")).out, "No current block job for ov\n");

      // --wait to the end.
      const done = await cli("blockpull", s, "ov", "--wait", "--verbose", "--bandwidth", "4");
      assert.equal(done.code, 0, done.err);
      assert.equal(done.out, "\nPull complete\n");
      assert.match(done.err, /\rBlock Pull: \[100 %\]$/);
      await server.stop();
      assert.equal(await backingOf(`${dir.path}/ov.qed`), undefined);
      assert.ok(await sameContents(`${dir.path}/ov.qed`, `${dir.path}/base.raw`));
    },
  });

  Deno.test({
    name: `[${kind}] streamdisk and streamdiskinfo print the prototype's texts`,
    ignore,
    fn: async () => {
      await using dir = await tempDir();
      await makeChain(dir.path);
      await using server = await startServer(kind, dir.path);
      const s = server.socket;
      assert.deepEqual(await cli("streamdiskinfo", s), {
        code: 0,
        out: "No active stream\n",
        err: "",
      });
      assert.deepEqual(await cli("streamdisk", s, "ov", "--start", "--bandwidth", "1"), {
        code: 0,
        out: "",
        err: "",
      });
      assert.match(
        (await cli("streamdiskinfo", s)).out,
        /^Streaming device ov: Completed \d+ of 4194304 bytes\n$/,
      );
      assert.deepEqual(await cli("streamdisk", s, "ov", "--stop"), { code: 0, out: "", err: "" });
      assert.deepEqual(await cli("streamdiskinfo", s), {
        code: 0,
        out: "No active stream\n",
        err: "",
      });
      assert.deepEqual(await cli("streamdisk", s, "vdz", "--one", "0"), {
        code: 1,
        out: "",
        err: "error: invalid argument: disk 'vdz' not found in domain\n",
      });
      const one = await cli("streamdisk", s, "ov", "--one", "0");
      if (kind === "qsd") {
        assert.equal(one.code, 1);
        assert.match(
          one.err,
          /^error: this function is not supported by the connection driver: streaming a single piece is not supported by this hypervisor/,
        );
        return;
      }
      assert.deepEqual(one, {
        code: 0,
        out: `Streaming device ov: Completed 524288 of ${DISK_SIZE} bytes\n`,
        err: "",
      });
      let at = 524288;
      while (at < DISK_SIZE) {
        const r = await cli("streamdisk", s, "ov", "--one", String(at));
        assert.equal(r.code, 0, r.err);
        at = Number(r.out.match(/Completed (\d+) of/)![1]);
      }
      await server.stop();
      assert.equal(await backingOf(`${dir.path}/ov.qed`), undefined);
      assert.ok(await sameContents(`${dir.path}/ov.qed`, `${dir.path}/base.raw`));
    },
  });
}

Deno.test({
  name: "[qsd] the verbs as separate processes: streams and exit codes",
  ignore,
  fn: async () => {
    await using dir = await tempDir();
    await makeChain(dir.path);
    await using server = await startServer("qsd", dir.path);
    const started = await qedstream(
      ["blockpull", server.socket, "ov", "--bandwidth", "1"],
      dir.path,
    );
    assert.deepEqual(started, { code: 0, stdout: "Block Pull started\n", stderr: "" });
    const busy = await qedstream(["blockpull", server.socket, "ov"], dir.path);
    assert.deepEqual(busy, {
      code: 1,
      stdout: "",
      stderr: "error: Requested operation is not valid: disk 'ov' already in active block job\n",
    });
    const abort = await qedstream(["blockjob", server.socket, "ov", "--abort"], dir.path);
    assert.deepEqual(abort, { code: 0, stdout: "", stderr: "" });
  },
});

for (const kind of SERVER_KINDS) {
  Deno.test({
    name: `[${kind}] blockpull --wait says Pull failed when the job fails`,
    ignore,
    fn: async () => {
      await using dir = await tempDir();
      await makeChain(dir.path);
      await using server = await startServer(kind, dir.path, { failReadAt: 3 << 20 });
      const r = await cli("blockpull", server.socket, "ov", "--wait", "--verbose");
      assert.equal(r.code, 1);
      assert.equal(r.out, "\nPull failed\n");
      assert.doesNotMatch(r.err, /100 %/);
    },
  });
}
