import assert from "node:assert/strict";
import { join } from "node:path";
import { templateFingerprint } from "../../block/template_fingerprint.ts";
import { encodeWorkingSet } from "../../block/working_set.ts";
import { main } from "../../cli.ts";
import { BufferedOutput } from "../../cli/output.ts";
import { tempDir } from "../_tools.ts";

const KiB = 1024;
const SIZE = 1024 * KiB;

function templateBytes(): Uint8Array {
  const b = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) b[i] = ((i >> 12) * 7 + (i & 0xff)) & 0xff;
  b.fill(0, 512 * KiB, 640 * KiB);
  return b;
}

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new BufferedOutput();
  const code = await main(argv, out);
  return { code, out: out.out, err: out.err };
}

Deno.test("manifest, stream --manifest --working-set and verify work together from the CLI", async () => {
  await using dir = await tempDir();
  const p = (name: string) => join(dir.path, name);
  const bytes = templateBytes();
  await Deno.writeFile(p("base.raw"), bytes);

  let r = await run("manifest", p("base.raw"));
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /16 chunks of 64 KiB/);
  const manifest = p("base.raw.manifest");

  const source = {
    size: SIZE,
    read: (o: number, b: Uint8Array) => Promise.resolve(b.set(bytes.subarray(o, o + b.length))),
  };
  await Deno.writeFile(
    p("boot.ws"),
    encodeWorkingSet({
      templateSize: SIZE,
      fingerprint: await templateFingerprint(source),
      ranges: [{ offset: 768 * KiB, length: 100 * KiB }, { offset: 0, length: 4 * KiB }],
    }),
  );
  r = await run("create", "-q", "-f", "qed", "-b", p("base.raw"), "-F", "raw", p("ov.qed"));
  assert.equal(r.code, 0, r.err);
  r = await run(
    "stream",
    "--working-set",
    p("boot.ws"),
    "--manifest",
    manifest,
    "--output",
    "json",
    p("ov.qed"),
  );
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /"event":"completed"/);

  r = await run("verify", p("ov.qed"), manifest);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /16 chunks of 64 KiB verified/);

  r = await run("io", p("ov.qed"), "-c", "write -q -P 0x11 200k 4k");
  assert.equal(r.code, 0, r.err);
  r = await run("verify", p("ov.qed"), manifest);
  assert.equal(r.code, 1);
  assert.match(r.out, /Content mismatch at offset 196608 \(0x30000\)/);
  r = await run("verify", "--output", "json", p("ov.qed"), manifest);
  const doc = JSON.parse(r.out);
  assert.equal(r.code, 1);
  assert.deepEqual({ ...doc, chunks: 0 }, {
    ok: false,
    chunks: 0,
    "chunk-size": 65536,
    offset: 196608,
  });

  r = await run("verify", p("ov.qed"), p("nope.manifest"));
  assert.equal(r.code, 2);
  r = await run("verify", p("ov.qed"), p("boot.ws"));
  assert.equal(r.code, 2);
  assert.match(r.err, /Not a checksum manifest/);
});

Deno.test("stream --manifest catches a corrupted template chunk and names its offset", async () => {
  await using dir = await tempDir();
  const p = (name: string) => join(dir.path, name);
  const bytes = templateBytes();
  await Deno.writeFile(p("base.raw"), bytes);
  assert.equal((await run("manifest", "-o", p("m"), "--chunk", "64k", p("base.raw"))).code, 0);
  // Rot one byte of a data chunk in the middle, not in the fingerprint's samples.
  const bad = bytes.slice();
  bad[5 * 65536 + 8192] = bad[5 * 65536 + 8192]! ^ 0x80;
  await Deno.writeFile(p("base.raw"), bad);
  assert.equal(
    (await run("create", "-q", "-f", "qed", "-b", p("base.raw"), "-F", "raw", p("ov.qed"))).code,
    0,
  );
  const r = await run("stream", "--manifest", p("m"), p("ov.qed"));
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /Stream failed .*Input\/output error \(Checksum mismatch: template chunk at offset 327680/,
  );
  // A working set of another template is refused before streaming.
  await Deno.writeFile(
    p("other.ws"),
    encodeWorkingSet({ templateSize: SIZE, fingerprint: new Uint8Array(32), ranges: [] }),
  );
  const w = await run("stream", "--working-set", p("other.ws"), p("ov.qed"));
  assert.equal(w.code, 1);
  assert.match(w.err, /Working set '.*other.ws': Working set is for another template/);
});
