/**
 * The machine a benchmark ran on, for its report: cores, CPU model, OS and
 * the Deno version.
 *
 * @module
 */

/** What {@linkcode machineInfo} reports. */
export interface MachineInfo {
  /** Logical CPUs. */
  cores: number;
  /** The CPU's model name, or `unknown`. */
  cpu: string;
  /** Operating system, kernel release and architecture. */
  os: string;
  /** Deno, V8 and TypeScript versions. */
  deno: string;
  /** The 1, 5 and 15 minute load averages at the start (other work skews the figures), or `unknown`. */
  load: string;
}

/** Reads the machine's description (Linux `/proc/cpuinfo` where present). */
export async function machineInfo(): Promise<MachineInfo> {
  let cpu = "unknown";
  try {
    const text = await Deno.readTextFile("/proc/cpuinfo");
    cpu = /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? cpu;
  } catch {
    // Not Linux: the model stays unknown.
  }
  let load = "unknown";
  try {
    load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  } catch {
    // Not Linux.
  }
  return {
    load,
    cores: navigator.hardwareConcurrency,
    cpu,
    os: `${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}`,
    deno:
      `deno ${Deno.version.deno} (v8 ${Deno.version.v8}, typescript ${Deno.version.typescript})`,
  };
}

/** The machine as report lines. */
export function formatMachine(m: MachineInfo): string {
  return `machine: ${m.cores} cores, ${m.cpu}, ${m.os}, load average ${m.load}\n${m.deno}\n`;
}
