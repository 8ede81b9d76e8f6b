/**
 * Project-wide rules that the code itself can check: the layering, the pins,
 * and the README's two commands.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");

/** Layer rank of each top-level place: an import may only point to a lower or equal rank. */
const RANK: Record<string, number> = {
  io: 0,
  qed: 1,
  nbd: 1,
  block: 2,
  qmp: 3,
  sim: 3,
  manage: 4,
  daemon: 4,
  emulator: 5,
  cli: 5,
  "cli.ts": 5,
  "mod.ts": 6,
};

function layerOf(path: string): string {
  const top = relative(root, path).split("/")[0]!;
  return top === "cli.ts" ? "cli" : top;
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith(".ts") ? [path] : [];
  });
}

Deno.test("imports run only downward: io → qed → block → qmp, sim → manage → cli", () => {
  const files = [
    ...Object.keys(RANK).flatMap((place) => {
      const path = join(root, place);
      try {
        return statSync(path).isDirectory() ? sources(path) : [path];
      } catch {
        return [];
      }
    }),
  ];
  const violations: string[] = [];
  for (const file of files) {
    const from = layerOf(file);
    // Doc examples (comment lines) may import anything, as tests do.
    const text = readFileSync(file, "utf8")
      .split("\n")
      .filter((line) => !/^\s*(\*|\/\/)/.test(line))
      .join("\n");
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
      const target = resolve(dirname(file), m[1]!);
      const to = layerOf(target);
      if (!(to in RANK) || to === from) continue;
      const sideways = RANK[to] === RANK[from] && to !== from;
      if (RANK[to]! > RANK[from]! || sideways) {
        violations.push(`${relative(root, file)} imports ${relative(root, target)}`);
      }
    }
  }
  assert.deepEqual(violations, []);
});

Deno.test("deno.json and package.json pin the same fast-check", () => {
  const deno = JSON.parse(readFileSync(join(root, "deno.json"), "utf8"));
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  assert.equal(deno.imports["fast-check"], `npm:fast-check@${pkg.devDependencies["fast-check"]}`);
  assert.match(pkg.devDependencies.deno, /^\d+\.\d+\.\d+$/);
});

Deno.test("README's Quick start holds exactly two commands: the demo and the tests", () => {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const section = readme.split(/^## /m).find((s) => s.startsWith("Quick start"));
  assert.ok(section, "README has a Quick start section");
  const block = section.match(/```sh\n([\s\S]*?)```/);
  assert.ok(block, "Quick start has a sh block");
  const commands = block[1]!.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
  assert.deepEqual(commands, ["npm start", "npm test"]);
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  assert.equal(pkg.scripts.start, "deno task demo");
  assert.equal(pkg.scripts.test, "deno task test");
});
