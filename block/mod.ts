/**
 * The block layer: a device graph over QED/raw/remote nodes, copy-on-read
 * with qemu's request serialisation, the job core and the stream job.
 *
 * - {@linkcode BlockNode} (`node.ts`): one node of the graph, with adapters
 *   {@linkcode qedNode}, {@linkcode rawNode}, {@linkcode sourceNode}; the
 *   {@linkcode BlockGraph} names them and holds the blockers; {@linkcode openNodeChain}
 *   opens an image file and its backing chain as nodes.
 * - {@linkcode RequestTracker}: in-flight requests with qemu's serialising rules.
 * - {@linkcode BlockDevice}: guest reads/writes, copy-on-read, block status through the chain.
 * - {@linkcode Job}, {@linkcode JobRegistry}, the tables {@linkcode JOB_TRANSITIONS}
 *   and {@linkcode JOB_VERBS}: qemu's job core, events and query shapes.
 * - {@linkcode RateLimit}: qemu's 100 ms-slice rate limiter on an injected clock.
 * - {@linkcode startStream} / {@linkcode StreamJob}: `block-stream`; {@linkcode streamOne}:
 *   single-chunk streaming.
 *
 * @example Stream an overlay into independence
 * ```ts ignore
 * import { JobRegistry, qedNode, rawNode, startStream } from "./mod.ts";
 * const base = rawNode(raw, { nodeName: "base" });
 * const top = qedNode(qed, { nodeName: "ov", backing: base });
 * const jobs = new JobRegistry();
 * const job = startStream(jobs, top, { jobId: "job0" });
 * await job.concluded; // top no longer has a backing file
 * ```
 *
 * @module
 */

export * from "./error.ts";
export * from "./node.ts";
export * from "./qed_node.ts";
export * from "./raw_node.ts";
export * from "./source_node.ts";
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
