/**
 * The block layer: a device graph over QED/raw/remote nodes, copy-on-read
 * with qemu's request serialisation, the job core and the stream job.
 *
 * - {@linkcode BlockNode} (`node.ts`): one node of the graph, with adapters
 *   {@linkcode qedNode}, {@linkcode rawNode}, {@linkcode sourceNode}; the
 *   {@linkcode BlockGraph} names them and holds the blockers; {@linkcode openNodeChain}
 *   opens an image file and its backing chain as nodes.
 * - {@linkcode quorumNode}: qemu's `quorum` driver, which votes on reads among
 *   its children and writes to all of them, reporting `QUORUM_REPORT_BAD` and
 *   `QUORUM_FAILURE` (the graph's {@linkcode BlockGraph.on} carries them).
 * - {@linkcode RequestTracker}: in-flight requests with qemu's serialising rules.
 * - {@linkcode BlockDevice}: guest reads/writes, copy-on-read, block status through the chain.
 * - {@linkcode Job}, {@linkcode JobRegistry}, the tables {@linkcode JOB_TRANSITIONS}
 *   and {@linkcode JOB_VERBS}: qemu's job core, events and query shapes.
 * - {@linkcode RateLimit}: qemu's 100 ms-slice rate limiter on an injected clock.
 * - {@linkcode startStream} / {@linkcode StreamJob}: `block-stream`; {@linkcode streamOne}:
 *   single-chunk streaming.
 * - Beyond qemu: {@linkcode WorkingSetRecorder} and the working-set file
 *   ({@linkcode encodeWorkingSet}), copied first by a stream; checksum manifests
 *   ({@linkcode buildManifest}, {@linkcode ManifestVerifier}) that verify every copy;
 *   {@linkcode GuestFirstScheduler}, which serves guest misses ahead of stream copies;
 *   {@linkcode templateFingerprint}, which ties the files to their template.
 *
 * @example Stream an overlay into independence
 * ```ts
 * import { MemoryStorage } from "../io/mod.ts";
 * import { QedImage, RawImage } from "../qed/mod.ts";
 * import { JobRegistry, qedNode, rawNode, startStream } from "./mod.ts";
 * const raw = await RawImage.open(new MemoryStorage(new Uint8Array(1 << 20).fill(3)));
 * const disk = new MemoryStorage();
 * await QedImage.create(disk, { size: 1 << 20, backingFile: "base.raw", backingFormat: "raw" });
 * const qed = await QedImage.open(disk);
 * const base = rawNode(raw, { nodeName: "base" });
 * const top = qedNode(qed, { nodeName: "ov", backing: base });
 * const jobs = new JobRegistry();
 * const job = startStream(jobs, top, { jobId: "job0" });
 * await job.concluded;
 * console.log(top.backing, qed.backingFile); // null undefined
 * ```
 *
 * @example A quorum of three children outvotes the one that differs
 * ```ts
 * import { MemoryStorage } from "../io/mod.ts";
 * import { RawImage } from "../qed/mod.ts";
 * import { BlockGraph, quorumNode, rawNode } from "./mod.ts";
 * const graph = new BlockGraph();
 * graph.on((e) => console.log(e.event)); // QUORUM_REPORT_BAD
 * const children = await Promise.all([7, 7, 9].map(async (fill, i) =>
 *   rawNode(await RawImage.open(new MemoryStorage(new Uint8Array(65536).fill(fill))), {
 *     nodeName: `c${i}`,
 *   })
 * ));
 * const quorum = quorumNode({
 *   nodeName: "qu",
 *   children,
 *   voteThreshold: 2,
 *   rewriteCorrupted: true,
 *   onEvent: (e) => graph.emit(e),
 * });
 * const buf = new Uint8Array(4096);
 * await quorum.read(0, buf);
 * await children[2]!.read(0, buf.subarray(0, 1));
 * console.log(buf[0]); // 7: the corrupted child was rewritten
 * ```
 *
 * @module
 */

export * from "./error.ts";
export * from "./node.ts";
export * from "./qed_node.ts";
export * from "./raw_node.ts";
export * from "./source_node.ts";
export * from "./nbd_node.ts";
export * from "./quorum.ts";
export * from "./graph.ts";
export * from "./request_tracker.ts";
export * from "./device.ts";
export * from "./rate_limit.ts";
export * from "./job_status.ts";
export * from "./job.ts";
export * from "./job_registry.ts";
export * from "./stream_job.ts";
export * from "./stream_one.ts";
export * from "./open_chain.ts";
export * from "./template_fingerprint.ts";
export * from "./working_set.ts";
export * from "./working_set_recorder.ts";
export * from "./copy_verifier.ts";
export * from "./manifest.ts";
export * from "./guest_first.ts";
export * from "./chain_walk.ts";
export * from "./commit_job.ts";
