/**
 * An emulator's drive: a QED overlay over a template, the way a provisioned
 * machine's disk starts out. The template (the overlay's backing) can be
 * bytes in memory, a computed sparse image, a simulated remote repository
 * (with latency, shared bandwidth and counters), an image file, or an NBD
 * export; the overlay lives in memory or in a file. A
 * {@linkcode faultNode} sits between them, so faults can be injected on
 * the template at any time.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { BlockDevice } from "../block/device.ts";
import { openNbdNode } from "../block/nbd_node.ts";
import type { BlockNode } from "../block/node.ts";
import { openNodeChain } from "../block/open_chain.ts";
import { qedNode } from "../block/qed_node.ts";
import { sourceNode } from "../block/source_node.ts";
import type { Clock } from "../io/clock.ts";
import { FileStorage } from "../io/file_storage.ts";
import { MemoryStorage } from "../io/memory_storage.ts";
import { readFull, type Storage } from "../io/storage.ts";
import { parseNbdUri } from "../nbd/uri.ts";
import type { QedCheckResult, QedExtent } from "../qed/image.ts";
import { QedImage } from "../qed/image.ts";
import type { ImageFormat } from "../qed/open_file.ts";
import {
  RemoteTemplate,
  type RemoteTemplateOptions,
  type TemplateSource,
} from "../sim/remote_template.ts";
import { SparseTemplate, type SparseTemplateOptions } from "../sim/sparse_template.ts";
import { EmulatorError } from "./error.ts";
import { type FaultNode, faultNode, type FaultPlan } from "./fault_plan.ts";

/** The template (backing) of a drive. */
export type TemplateSpec =
  | {
    /** Raw bytes in memory; the template's size is their length. */
    type: "memory";
    /** The template's content. */
    bytes: Uint8Array;
  }
  | {
    /** A computed template of any size (4 GiB costs no memory), read without delay. */
    type: "sparse";
    /** Its size, seed and layout. Default: {@linkcode SparseTemplateOptions}' defaults. */
    template?: SparseTemplateOptions;
  }
  | {
    /**
     * A simulated remote repository reached over a network with latency and
     * shared bandwidth, on the emulator's clock (use a virtual clock).
     */
    type: "remote";
    /**
     * What it serves: a {@linkcode SparseTemplate}'s options, or any
     * {@linkcode TemplateSource}. Ignored when `repository` is given.
     * Default: a 64 MiB sparse template.
     */
    template?: SparseTemplateOptions | TemplateSource;
    /** Network settings of a new repository (`rttMs`, `bandwidth`, `maxInFlight`, ...). */
    network?: Omit<RemoteTemplateOptions, "clock">;
    /** An existing repository to share with other drives (a fleet). Default: a new one. */
    repository?: RemoteTemplate;
  }
  | {
    /** An image file and its backing chain, opened read-only. */
    type: "file";
    /** Its path; the overlay records it as its backing file. */
    path: string;
    /** Its format. Default: probed. */
    format?: ImageFormat;
  }
  | {
    /** An NBD export, in qemu's URI syntax (`nbd+unix:///name?socket=/tmp/s`, `nbd://host:port/name`). */
    type: "nbd";
    /** The export's URI; the overlay records it as its backing file. */
    uri: string;
  };

/** Where a drive's overlay lives. */
export type OverlaySpec =
  | {
    /** In memory (the default). */
    type: "memory";
    /** The storage to create it in. Default: a new {@linkcode MemoryStorage}. */
    storage?: MemoryStorage;
    /** QED cluster size. Default 65536. */
    clusterSize?: number;
  }
  | {
    /** An image file, created (or replaced) at start. */
    type: "file";
    /** Its path. */
    path: string;
    /** QED cluster size. Default 65536. */
    clusterSize?: number;
  };

/** One drive of an emulator. */
export interface DriveOptions {
  /** The drive's name: the overlay's node name, which QMP commands take as `device`. */
  name: string;
  /** What the overlay is backed by. */
  template: TemplateSpec;
  /** Where the overlay lives. Default `{ type: "memory" }`. */
  overlay?: OverlaySpec;
  /** Faults on the template from the start. Default none. */
  faults?: FaultPlan;
  /** Guest reads copy what they read from the template into the overlay (qemu's `copy-on-read=on`). Default false. */
  copyOnRead?: boolean;
}

/** A drive of a running emulator: its nodes, its images and its faults. */
export class EmulatorDrive {
  /** The drive's name (the overlay's node name). */
  readonly name: string;
  /** The overlay's node: the top of the drive's chain. */
  readonly node: BlockNode;
  /** The overlay image. */
  readonly image: QedImage;
  /** The overlay's storage. */
  readonly storage: Storage;
  /**
   * The template's node as the overlay sees it (node name `<name>-template`),
   * with the fault plan in force.
   */
  readonly backing: FaultNode;
  /**
   * The simulated repository, for `remote` templates: its load and
   * per-client counters, and `setFaults()` for network-level faults (slow
   * periods, outages that cost a round trip).
   */
  readonly remote: RemoteTemplate | undefined;
  /** What the guest sees: reads and writes through the chain (copy-on-read when asked). */
  readonly device: BlockDevice;
  readonly #inspect: BlockDevice;
  readonly #reference: (offset: number, buf: Uint8Array) => Promise<void>;

  /** @internal Made by the emulator. */
  constructor(parts: {
    name: string;
    node: BlockNode;
    image: QedImage;
    storage: Storage;
    backing: FaultNode;
    remote: RemoteTemplate | undefined;
    copyOnRead: boolean;
    reference: (offset: number, buf: Uint8Array) => Promise<void>;
  }) {
    this.name = parts.name;
    this.node = parts.node;
    this.image = parts.image;
    this.storage = parts.storage;
    this.backing = parts.backing;
    this.remote = parts.remote;
    this.device = new BlockDevice(parts.node, { copyOnRead: parts.copyOnRead });
    this.#inspect = new BlockDevice(parts.node);
    this.#reference = parts.reference;
  }

  /** The virtual size in bytes. */
  get size(): number {
    return this.node.size;
  }

  /** The backing file the overlay's header names; `undefined` once it is independent. */
  get backingFile(): string | undefined {
    return this.image.backingFile;
  }

  /** Whether the overlay no longer needs its template (a stream has completed). */
  get independent(): boolean {
    return this.node.backing === null && this.image.backingFile === undefined;
  }

  /** The guest-visible bytes at `offset` (through the chain, without copy-on-read). */
  async read(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    await this.#inspect.read(offset, buf);
    return buf;
  }

  /** The template's bytes at `offset`, read at the source (no faults, no network cost). */
  async readTemplate(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    await this.#reference(offset, buf);
    return buf;
  }

  /**
   * The overlay's file as bytes (a QED image that qemu-img can open). Works
   * after the emulator has closed, too: the image is then complete and clean.
   */
  async imageBytes(): Promise<Uint8Array> {
    if (this.storage instanceof MemoryStorage) return this.storage.snapshot();
    if (this.storage instanceof FileStorage) return new Uint8Array(readFileSync(this.storage.path));
    const buf = new Uint8Array(await this.storage.size());
    await readFull(this.storage, 0, buf);
    return buf;
  }

  /** `qemu-img check` of the overlay, read-only. */
  check(): Promise<QedCheckResult> {
    return this.image.check();
  }

  /** The overlay's allocation map (`qemu-img map` of this image alone). */
  map(offset?: number, length?: number): Promise<QedExtent[]> {
    return this.image.map(offset, length);
  }

  /** Replaces the fault plan on the template from now on. */
  injectFaults(plan: FaultPlan): void {
    this.backing.setPlan(plan);
  }

  /** Lifts every fault: reads of the template succeed again. */
  liftFaults(): void {
    this.backing.setPlan({});
  }
}

/** An opened drive and how to release it. */
export interface OpenedDrive {
  /** The handle. */
  drive: EmulatorDrive;
  /** Closes the overlay (flushing it) and then the template. */
  close(): Promise<void>;
}

/** The template's node, the reference reader and the name the overlay records. */
interface OpenedTemplate {
  node: BlockNode;
  reference: (offset: number, buf: Uint8Array) => Promise<void>;
  backingFile: string;
  backingFormat?: string;
  remote?: RemoteTemplate;
  close(): Promise<void>;
}

async function openTemplate(options: DriveOptions, clock: Clock): Promise<OpenedTemplate> {
  const spec = options.template;
  const nodeName = `${options.name}-template`;
  switch (spec.type) {
    case "memory": {
      const bytes = spec.bytes;
      const reference = (offset: number, buf: Uint8Array): Promise<void> => {
        buf.set(bytes.subarray(offset, offset + buf.length));
        return Promise.resolve();
      };
      const node = sourceNode({ size: bytes.length, read: reference }, {
        nodeName,
        driver: "raw",
        filename: `memory:${options.name}`,
      });
      return {
        node,
        reference,
        backingFile: `memory:${options.name}`,
        backingFormat: "raw",
        close: () => node.close(),
      };
    }
    case "sparse": {
      const template = new SparseTemplate(spec.template);
      const node = sourceNode(template, {
        nodeName,
        driver: "raw",
        filename: `sparse:${options.name}`,
      });
      return {
        node,
        reference: (offset, buf) => template.read(offset, buf),
        backingFile: `sparse:${options.name}`,
        backingFormat: "raw",
        close: () => node.close(),
      };
    }
    case "remote": {
      let repository = spec.repository;
      if (!repository) {
        const t = spec.template;
        const source: TemplateSource = t !== undefined && "read" in t
          ? t
          : new SparseTemplate({ size: 64 << 20, bootRegionLength: 8 << 20, ...t });
        repository = new RemoteTemplate(source, { ...spec.network, clock });
      }
      const source = repository.source;
      const node = repository.connect(options.name);
      return {
        node,
        reference: (offset, buf) => source.read(offset, buf),
        backingFile: node.filename,
        backingFormat: "raw",
        remote: repository,
        close: () => node.close(),
      };
    }
    case "file": {
      const path = isAbsolute(spec.path) ? spec.path : resolve(spec.path);
      const chain = await openNodeChain(path, {
        readOnly: true,
        nodeName,
        ...(spec.format ? { format: spec.format } : {}),
      });
      const node = chain.top;
      return {
        node,
        reference: (offset, buf) => node.read(offset, buf),
        backingFile: path,
        ...(node.driver === "raw" ? { backingFormat: "raw" } : {}),
        close: () => chain.close(),
      };
    }
    case "nbd": {
      const node = await openNbdNode(parseNbdUri(spec.uri), {
        nodeName,
        readOnly: true,
        client: { clock },
      });
      return {
        node,
        reference: (offset, buf) => node.read(offset, buf),
        backingFile: spec.uri,
        backingFormat: "raw",
        close: () => node.close(),
      };
    }
    default:
      throw new EmulatorError(
        "EMULATOR_BAD_TEMPLATE",
        `Drive '${options.name}': unknown template type '${(spec as { type: unknown }).type}'`,
      );
  }
}

/**
 * Opens a drive: the template, the fault node over it, and a new QED
 * overlay backed by it. Nothing stays open when it fails.
 */
export async function openDrive(options: DriveOptions, clock: Clock): Promise<OpenedDrive> {
  if (!/^[A-Za-z][A-Za-z0-9_.-]{0,126}$/.test(options.name)) {
    throw new EmulatorError(
      "EMULATOR_BAD_DRIVE",
      `Drive name '${options.name}' must start with a letter and hold only letters, digits, '-', '.', '_'`,
    );
  }
  const template = await openTemplate(options, clock);
  const overlay = options.overlay ?? { type: "memory" };
  let storage: Storage | undefined;
  try {
    storage = overlay.type === "file"
      ? await FileStorage.open(overlay.path, { create: true, truncate: true })
      : overlay.storage ?? new MemoryStorage();
    await QedImage.create(storage, {
      size: template.node.size,
      backingFile: template.backingFile,
      ...(template.backingFormat ? { backingFormat: template.backingFormat } : {}),
      ...(overlay.clusterSize ? { clusterSize: overlay.clusterSize } : {}),
    });
    const backing = faultNode(template.node, {
      clock,
      nodeName: `${options.name}-template`,
      ...(options.faults ? { plan: options.faults } : {}),
    });
    const image = await QedImage.open(storage);
    const node = qedNode(image, {
      nodeName: options.name,
      filename: overlay.type === "file" ? overlay.path : `memory:${options.name}.qed`,
      backing,
    });
    const drive = new EmulatorDrive({
      name: options.name,
      node,
      image,
      storage,
      backing,
      remote: template.remote,
      copyOnRead: options.copyOnRead ?? false,
      reference: template.reference,
    });
    return {
      drive,
      close: async () => {
        await node.close().catch(() => {});
        await template.close().catch(() => {});
      },
    };
  } catch (e) {
    await storage?.close().catch(() => {});
    await template.close().catch(() => {});
    throw e;
  }
}
