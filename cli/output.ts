/**
 * Where a command prints: a pair of text sinks, so the verbs run the same in
 * a terminal and inside a test that collects their output.
 *
 * @module
 */

/** The two streams a command writes to. */
export interface CliOutput {
  /** Writes text (already ending in a newline where one is meant) to standard output. */
  stdout(text: string): void;
  /** Writes text to standard error. */
  stderr(text: string): void;
}

/**
 * A {@linkcode CliOutput} that collects everything, for tests.
 *
 * @example
 * ```ts
 * import { BufferedOutput } from "./output.ts";
 * const out = new BufferedOutput();
 * out.stdout("hello\n");
 * console.log(out.out); // hello
 * ```
 */
export class BufferedOutput implements CliOutput {
  /** Everything written to standard output. */
  out = "";
  /** Everything written to standard error. */
  err = "";

  /** Appends to {@linkcode BufferedOutput.out}. */
  stdout(text: string): void {
    this.out += text;
  }

  /** Appends to {@linkcode BufferedOutput.err}. */
  stderr(text: string): void {
    this.err += text;
  }
}

/** The process's own standard output and error, written synchronously so lines never interleave. */
export const processOutput: CliOutput = {
  stdout(text: string): void {
    writeAll(Deno.stdout, text);
  },
  stderr(text: string): void {
    writeAll(Deno.stderr, text);
  },
};

function writeAll(stream: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = new TextEncoder().encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(stream.writeSync(bytes));
}
