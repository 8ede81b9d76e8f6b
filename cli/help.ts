/**
 * The `qedstream` command's help and version texts.
 *
 * @module
 */

/** The version printed by `qedstream --version`. */
export const VERSION = "0.1.0";

/** `qedstream --version`. */
export function formatVersion(): string {
  return `qedstream version ${VERSION} (QED images as qemu 7.2 writes them)\n`;
}

/** `qedstream help`: a summary of every verb. */
export function formatHelp(): string {
  return `qedstream: QED disk images and disk streaming, like qemu-img and qemu-io

Usage: qedstream VERB [OPTIONS] ARGS

Verbs:
  create [-q] [-f qed|raw] [-b BACKING -F raw|qed] [-u] [-o cluster_size=N,table_size=N] FILE [SIZE]
        Create an image. SIZE takes K, M, G, T suffixes; without it the
        backing file's size is used. -u does not open the backing file.
  info [-f FMT] [--output human|json] [--backing-chain] FILE
        Show the format, sizes and backing file of an image.
  check [-q] [-f FMT] [-r leaks|all] [--output human|json] FILE
        Check a QED image's metadata; -r all repairs invalid offsets.
        Exit 0 clean, 1 check failed, 2 corruptions, 3 leaks only.
  map [-f FMT] [--output human|json] FILE
        Show where each range of the image's contents is stored.
  compare [-q] [-s] [-f FMT] [-F FMT] A B
        Compare guest-visible contents. Exit 0 identical, 1 different, 2 error.
  rebase -u [-f FMT] -b BACKING [-F FMT] FILE
        Change the backing file named in the header (-b '' removes it);
        the data is not touched.
  io [-r] [-f FMT] FILE -c CMD [-c CMD ...]
        Run qemu-io commands: read [-qv] [-P PATTERN] OFF LEN,
        write [-q] [-P PATTERN] OFF LEN, write [-q] -z OFF LEN.
  stream [--speed BYTES/s] [--base FILE] [--chunk SIZE] [--parallel N]
         [--on-error report|ignore|stop|enospc|auto] [--output json]
         [--working-set FILE] [--manifest FILE] FILE
        Copy the backing chain's data into the overlay until it no longer
        needs its backing file (or only --base). Defaults: --chunk 2M,
        --parallel 4, no speed limit. Ctrl-C cancels: the image stays
        consistent and a rerun continues. Exit 130 when cancelled.
        --working-set copies a recorded working set first, in its order;
        --manifest verifies every copied chunk against the template's manifest.
  manifest [-f FMT] [-o FILE] [--chunk SIZE] TEMPLATE
        Write the template's checksum manifest (SHA-256 per chunk, default
        64K) to FILE, default TEMPLATE.manifest.
  verify [-q] [-f FMT] [--output json] OVERLAY MANIFEST
        Check an image against a manifest. Exit 0 all chunks match, 1 at the
        first mismatch (its offset is printed), 2 error.
  demo [--size SIZE] [--rtt MS] [--bandwidth BITS/s] [--machines N] [--seed N]
       [--scenarios LIST] [--duration D] [--output json] [--real-time] [--svg PATH]
        Provision a simulated machine from a remote template by copy, overlay
        and streaming; print the measured comparison, write an SVG timeline
        and verify the images. 'qedstream demo --help' lists every option.
  serve [--blockdev OPTS]... [--chardev socket,... --monitor ID | --qmp ADDR]...
        [--nbd-server OPTS --export type=nbd,...]...
        The emulated machine: qemu-storage-daemon's command line, QMP monitors
        and NBD exports. 'qedstream serve --help' lists every option.
  blockpull SOCKET DISK [--bandwidth N] [--bytes] [--base FILE]
            [--wait [--verbose] [--timeout SECONDS] [--async]]
        virsh's blockpull over QMP (SOCKET: unix:PATH or tcp:HOST:PORT; DISK: a
        node name or image path). Bandwidth in MiB/s, or bytes/s with --bytes.
  blockjob SOCKET DISK (--abort [--async] | --info [--raw] [--bytes] | --bandwidth N [--bytes])
        virsh's blockjob: show, re-throttle or abort the disk's block job.
  blockcommit SOCKET DISK [--base FILE] [--top FILE] [--active] [--bandwidth N] [--bytes]
              [--wait [--verbose] [--timeout SECONDS]] [--pivot | --keep-overlay]
        virsh's blockcommit: merge TOP (default: the active layer) into BASE.
  streamdisk SOCKET DISK (--start [--bandwidth N [--bytes]] | --stop | --one OFFSET)
  streamdiskinfo SOCKET
        The seed's virDomainStreamDisk / virDomainStreamDiskInfo. --one streams
        the piece at OFFSET and prints the offset to continue from.
  help, --help
        Show this help.
  --version
        Show the version.

Errors are one line on standard error and a non-zero exit code.
`;
}
