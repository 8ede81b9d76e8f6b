/**
 * `qedstream demo --real`: option 3 of the provisioning comparison (boot at
 * once from a local QED overlay and stream the template into it) against a
 * real NBD repository instead of the simulated one.
 *
 * The demo writes the seeded sparse template to a raw file in a temporary
 * folder, serves it with nbdkit on a Unix socket there (`--filter=rate`
 * for `--bandwidth`, `--filter=delay` for `--rtt`), makes the overlay with
 * the backing name `nbd+unix:///template?socket=…` as `qemu-img create -b`
 * would, runs the simulated guest and the stream job on the system clock,
 * verifies the image, and stops nbdkit and removes the folder at the end.
 *
 * @module
 */

import { join } from "node:path";
import { JobRegistry } from "../block/job_registry.ts";
import { openNbdNode } from "../block/nbd_node.ts";
import type { BlockNode, BlockStatus } from "../block/node.ts";
import { systemClock } from "../io/clock.ts";
import { FileStorage } from "../io/file_storage.ts";
import { Machine, type MachineRun } from "../sim/machine.ts";
import type { RemoteCounters, RemoteNode } from "../sim/remote_template.ts";
import { formatBytes, formatDuration } from "../sim/scenario.ts";
import { SparseTemplate } from "../sim/sparse_template.ts";
import { summarize } from "../sim/stats.ts";
import { verifyImage, type VerifyResult } from "../sim/verify.ts";
import type { DemoOptions } from "./demo_options.ts";
import { USAGE_EXIT_CODE } from "./demo_options.ts";
import { CliError } from "./error.ts";
import type { CliOutput } from "./output.ts";

/** The export name the demo's nbdkit serves. */
const EXPORT = "template";
/** How long nbdkit may take to create its socket, in ms. */
const START_TIMEOUT_MS = 10_000;

/** The one line `demo --real` prints (exit 2) when nbdkit is missing. */
export const NBDKIT_MISSING =
  "demo --real: nbdkit is not installed (it serves the template repository); " +
  "install it (e.g. 'apt-get install nbdkit') or run the simulated demo without --real";

/** Whether `program` can be run. */
async function installed(program: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(program, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** Writes the template's data regions into a sparse raw file of its size. */
async function writeTemplate(template: SparseTemplate, path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    await file.truncate(template.size);
    const buf = new Uint8Array(1024 * 1024);
    for (const extent of template.extents) {
      for (let at = extent.offset; at < extent.offset + extent.length; at += buf.length) {
        const piece = buf.subarray(0, Math.min(buf.length, extent.offset + extent.length - at));
        template.readSync(at, piece);
        await file.seek(at, Deno.SeekMode.Start);
        for (let done = 0; done < piece.length;) done += await file.write(piece.subarray(done));
      }
    }
  } finally {
    file.close();
  }
}

/** nbdkit running the template repository; stopped by `stop`. */
interface Repository {
  socket: string;
  uri: string;
  args: string[];
  stop(): Promise<void>;
}

async function startRepository(
  dir: string,
  templatePath: string,
  options: { rttMs: number; bitsPerSecond: number },
): Promise<Repository> {
  const socket = join(dir, "repository.sock");
  // nbdkit writes its pid file only once the socket accepts connections; the
  // socket file itself appears at bind(), before listen(), too early to connect.
  const pidfile = join(dir, "nbdkit.pid");
  // One read waits one round trip; the rate filter counts bits per second for the whole server.
  const args = [
    "--filter=rate",
    "--filter=delay",
    "file",
    templatePath,
    `rate=${Math.round(options.bitsPerSecond)}`,
    "burstiness=0.1",
    `rdelay=${options.rttMs}ms`,
  ];
  const child = new Deno.Command("nbdkit", {
    args: ["-f", "-U", socket, "-P", pidfile, "-e", EXPORT, ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const errors = new Response(child.stderr).text();
  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    await status;
    await errors;
  };
  for (let waited = 0; waited < START_TIMEOUT_MS && !exited; waited += 10) {
    try {
      if ((await Deno.stat(pidfile)).size > 0) {
        return { socket, uri: `nbd+unix:///${EXPORT}?socket=${socket}`, args, stop };
      }
    } catch {
      // Not there yet.
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  await stop();
  throw new CliError(`demo --real: nbdkit did not start: ${(await errors).trim()}`);
}

/** The NBD node with the counters the machine reports (the simulated remote's shape). */
function countingNode(node: BlockNode): BlockNode & { counters: RemoteCounters } {
  const counters: RemoteCounters = {
    readRequests: 0,
    statusRequests: 0,
    bytes: 0,
    errors: 0,
    queuedMs: 0,
  };
  const counted = async <T>(op: () => Promise<T>): Promise<T> => {
    try {
      return await op();
    } catch (e) {
      counters.errors++;
      throw e;
    }
  };
  return {
    nodeName: node.nodeName,
    driver: node.driver,
    filename: node.filename,
    get size() {
      return node.size;
    },
    readOnly: true,
    backing: null,
    counters,
    read(offset, buf) {
      counters.readRequests++;
      return counted(async () => {
        await node.read(offset, buf);
        counters.bytes += buf.length;
      });
    },
    write: (offset, data) => node.write(offset, data),
    writeZeroes: (offset, length) => node.writeZeroes(offset, length),
    flush: () => node.flush(),
    blockStatus(offset, length): Promise<BlockStatus> {
      counters.statusRequests++;
      return counted(() => node.blockStatus(offset, length));
    },
    close: () => node.close(),
  };
}

/**
 * Runs option 3 against a real nbdkit repository and prints its report;
 * returns the exit code (0 verified, 1 not). Exits 2 (a {@linkcode CliError})
 * when nbdkit is not installed.
 */
export async function runRealDemo(options: DemoOptions, out: CliOutput): Promise<number> {
  if (!(await installed("nbdkit"))) {
    throw new CliError(NBDKIT_MISSING, { exitCode: USAGE_EXIT_CODE });
  }
  const c = options.comparison;
  const seed = c.seed ?? 1;
  const template = new SparseTemplate({ dataFraction: 0.08, seed, ...c.template });
  const rttMs = c.rttMs ?? 20;
  const bitsPerSecond = (c.bandwidth ?? 125_000_000) * 8;
  const dir = await Deno.makeTempDir({ prefix: "qedstream-demo-real-" });
  let repository: Repository | undefined;
  let run: MachineRun | undefined;
  let remote: BlockNode | undefined;
  try {
    const templatePath = join(dir, "template.raw");
    await writeTemplate(template, templatePath);
    repository = await startRepository(dir, templatePath, { rttMs, bitsPerSecond });
    out.stderr(
      `demo --real: option 3 (boot + stream) of a ${formatBytes(template.size)} template ` +
        `(${formatBytes(template.dataBytes)} data, seed ${seed}) from a real repository: ` +
        `nbdkit ${repository.args.join(" ")} on ${repository.uri}, in ${dir} ` +
        `(stopped and removed at the end)\n`,
    );
    remote = countingNode(
      await openNbdNode(
        { address: { type: "unix", path: repository.socket }, exportName: EXPORT },
        { nodeName: "repository", filename: repository.uri, readOnly: true },
      ),
    );
    const clock = systemClock;
    const machine = new Machine({
      name: "stream",
      mode: "stream",
      clock,
      template,
      // The machine needs only a node with counters; the NBD node has both.
      remote: remote as unknown as RemoteNode,
      storage: await FileStorage.open(join(dir, "stream.qed"), { create: true, truncate: true }),
      jobs: new JobRegistry({ clock }),
      guest: {
        seed: seed * 1000,
        ...(c.guest?.boot ? { boot: c.guest.boot } : {}),
        ...(c.guest?.steady ? { steady: c.guest.steady } : {}),
      },
      ...(c.stream ? { stream: c.stream } : {}),
    });
    run = await machine.run();
    const verify = await verifyImage(run.image, template, run.guestModel);
    out.stdout(formatRealReport(run, verify, template) + "\n");
    return verify.ok ? 0 : 1;
  } finally {
    await run?.image.close().catch(() => {});
    await remote?.close().catch(() => {});
    await repository?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** The report of a real run: milestones, traffic, guest latency and the verification. */
export function formatRealReport(
  run: MachineRun,
  verify: VerifyResult,
  template: SparseTemplate,
): string {
  const t0 = run.startedAt;
  const at = (t: number | null) => (t === null ? "never" : formatDuration(t - t0));
  const lat = summarize(run.guest.samples.map((s) => s.latencyMs));
  const lines = [
    `Option 3 against nbdkit: ${formatBytes(template.size)} template, ` +
    `${formatBytes(template.dataBytes)} of data`,
    `  ${"first guest I/O done".padEnd(30)} ${at(run.guest.firstIoDoneAt)}`,
    `  ${"boot done".padEnd(30)} ${at(run.guest.bootDoneAt)}`,
    `  ${"independent of the repository".padEnd(30)} ${at(run.independentAt)}` +
    (run.streamError ? ` (stream failed: ${run.streamError})` : ""),
    `  ${"guest done".padEnd(30)} ${at(run.guest.finishedAt)}`,
    `  fetched ${formatBytes(run.remote.bytes)} in ${run.remote.readRequests} reads and ` +
    `${run.remote.statusRequests} status requests (${run.remote.errors} errors)`,
    `  guest: ${run.guest.reads} reads, ${run.guest.writes} writes; latency ms ` +
    `p50 ${lat.p50.toFixed(2)}, p99 ${lat.p99.toFixed(2)}, max ${lat.max.toFixed(2)}`,
    `Verification: ${verify.checkClean ? "check clean" : "check NOT clean"}; ${
      verify.independent ? "no backing file" : "STILL NEEDS ITS BACKING FILE"
    }; ` +
    (verify.firstMismatch === undefined
      ? `${formatBytes(verify.bytesCompared)} equal to the template plus the guest's writes`
      : `FIRST MISMATCH at byte ${verify.firstMismatch}`) +
    ` — ${verify.ok ? "OK" : "FAILED: " + verify.problems.join("; ")}`,
  ];
  return lines.join("\n");
}
