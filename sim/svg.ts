/**
 * Renders a scenario timeline as a self-contained SVG picture.
 *
 * @module
 */

/** One line of a chart: a label and `[time ms, value]` points. */
export interface Series {
  /** The legend text. */
  label: string;
  /** `[virtual ms, value]`, in time order. */
  points: readonly (readonly [number, number])[];
}

/** A moment worth marking on a chart (e.g. "independent"). */
export interface Marker {
  /** Which series it belongs to (its colour). */
  label: string;
  /** Virtual ms. */
  at: number;
  /** Short text drawn next to the mark. */
  text: string;
}

/** What {@linkcode renderTimelineSvg} draws. */
export interface TimelineChart {
  /** The title above both charts. */
  title: string;
  /** Local bytes over time, one series per option. */
  localBytes: readonly Series[];
  /** A horizontal reference line for the local-bytes chart (the template's data), or 0. */
  referenceBytes?: number;
  /** Guest I/O latency samples in ms, one series per option. */
  latency: readonly Series[];
  /** Marks drawn on the local-bytes chart. */
  markers?: readonly Marker[];
  /** Extra lines printed under the title (the parameters of the run). */
  subtitle?: string;
  /** The time axes' caption. Default `virtual time`. */
  timeAxis?: string;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"];
const WIDTH = 1000;
const LEFT = 80;
const RIGHT = 240;
const PLOT_W = WIDTH - LEFT - RIGHT;
const PLOT_H = 220;

/** Escapes text for XML. */
function esc(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A round step giving about `count` ticks over `span`. */
function niceStep(span: number, count: number): number {
  if (!(span > 0)) return 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

function fmtBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number(v.toFixed(v < 10 && u > 0 ? 1 : 0))} ${units[u]}`;
}

function fmtSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number(s.toFixed(s < 10 ? 1 : 0))} s`;
}

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${ms / 1000} s` : ms >= 1 ? `${ms} ms` : `${ms * 1000} µs`;
}

/**
 * Renders two charts sharing one time axis: local bytes over time per option
 * (with markers such as the moment a machine stops needing the repository)
 * and guest I/O latency per option on a logarithmic scale. A pure function:
 * the same chart gives the same string.
 *
 * @example
 * ```ts
 * import { renderTimelineSvg } from "./svg.ts";
 * const svg = renderTimelineSvg({
 *   title: "demo",
 *   localBytes: [{ label: "stream", points: [[0, 0], [1000, 1 << 20]] }],
 *   latency: [{ label: "stream", points: [[10, 20], [500, 1]] }],
 * });
 * console.log(svg.startsWith("<svg")); // true
 * ```
 */
export function renderTimelineSvg(chart: TimelineChart): string {
  const all = [...chart.localBytes, ...chart.latency];
  let tMax = 0;
  for (const s of all) for (const [t] of s.points) tMax = Math.max(tMax, t);
  for (const m of chart.markers ?? []) tMax = Math.max(tMax, m.at);
  tMax = tMax > 0 ? tMax * 1.03 : 1000;
  const labels = [...new Set(all.map((s) => s.label))];
  const color = (label: string) => COLORS[labels.indexOf(label) % COLORS.length]!;
  const top1 = chart.subtitle ? 78 : 60;
  const top2 = top1 + PLOT_H + 70;
  const height = top2 + PLOT_H + 50;
  const x = (t: number) => LEFT + (t / tMax) * PLOT_W;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" ` +
      `viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${LEFT}" y="28" font-size="18" font-weight="bold">${esc(chart.title)}</text>`,
  );
  if (chart.subtitle) {
    out.push(`<text x="${LEFT}" y="50" fill="#555">${esc(chart.subtitle)}</text>`);
  }
  const tStep = niceStep(tMax, 10);
  const xAxis = (top: number) => {
    for (let t = 0; t <= tMax + 1e-9; t += tStep) {
      out.push(
        `<line x1="${x(t).toFixed(1)}" y1="${top}" x2="${x(t).toFixed(1)}" y2="${
          top + PLOT_H
        }" stroke="#eee"/>`,
        `<text x="${x(t).toFixed(1)}" y="${top + PLOT_H + 16}" text-anchor="middle">${
          fmtSeconds(t)
        }</text>`,
      );
    }
    out.push(
      `<rect x="${LEFT}" y="${top}" width="${PLOT_W}" height="${PLOT_H}" fill="none" stroke="#888"/>`,
      `<text x="${LEFT + PLOT_W / 2}" y="${top + PLOT_H + 34}" text-anchor="middle" fill="#555">${
        esc(chart.timeAxis ?? "virtual time")
      }</text>`,
    );
  };

  // Chart 1: local bytes over time.
  let bMax = chart.referenceBytes ?? 0;
  for (const s of chart.localBytes) for (const [, v] of s.points) bMax = Math.max(bMax, v);
  bMax = bMax > 0 ? bMax * 1.05 : 1;
  const y1 = (v: number) => top1 + PLOT_H - (v / bMax) * PLOT_H;
  out.push(
    `<text x="${LEFT}" y="${
      top1 - 8
    }" font-weight="bold">Local bytes per machine (fleet: mean)</text>`,
  );
  // Ticks at round numbers of a binary unit (MiB, GiB), not of bytes.
  const unit = 1024 ** Math.max(0, Math.min(4, Math.floor(Math.log(bMax) / Math.log(1024))));
  const bStep = niceStep(bMax / unit, 5) * unit;
  for (let v = 0; v <= bMax; v += bStep) {
    out.push(
      `<line x1="${LEFT}" y1="${y1(v).toFixed(1)}" x2="${LEFT + PLOT_W}" y2="${
        y1(v).toFixed(1)
      }" stroke="#eee"/>`,
      `<text x="${LEFT - 6}" y="${(y1(v) + 4).toFixed(1)}" text-anchor="end">${fmtBytes(v)}</text>`,
    );
  }
  xAxis(top1);
  if (chart.referenceBytes) {
    const yy = y1(chart.referenceBytes).toFixed(1);
    out.push(
      `<line x1="${LEFT}" y1="${yy}" x2="${
        LEFT + PLOT_W
      }" y2="${yy}" stroke="#999" stroke-dasharray="4 4"/>`,
      `<text x="${LEFT + 4}" y="${Number(yy) - 4}" fill="#777">template data</text>`,
    );
  }
  for (const s of chart.localBytes) {
    if (s.points.length === 0) continue;
    const d = s.points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y1(v).toFixed(1)}`)
      .join("");
    out.push(`<path d="${d}" fill="none" stroke="${color(s.label)}" stroke-width="2"/>`);
  }
  for (const [i, m] of (chart.markers ?? []).entries()) {
    const xx = x(m.at).toFixed(1);
    out.push(
      `<line x1="${xx}" y1="${top1}" x2="${xx}" y2="${top1 + PLOT_H}" stroke="${
        color(m.label)
      }" stroke-dasharray="2 3"/>`,
      `<text x="${Number(xx) + 3}" y="${top1 + 12 + (i % 4) * 12}" fill="${
        color(m.label)
      }" font-size="10">${esc(m.text)}</text>`,
    );
  }

  // Chart 2: guest latency, log scale.
  let lMax = 1;
  let lMin = Infinity;
  for (const s of chart.latency) {
    for (const [, v] of s.points) {
      lMax = Math.max(lMax, v);
      if (v > 0) lMin = Math.min(lMin, v);
    }
  }
  const decLo = Math.floor(Math.log10(Number.isFinite(lMin) ? Math.min(lMin, 1) : 0.1));
  const decHi = Math.ceil(Math.log10(lMax));
  const floor = 10 ** decLo;
  const y2 = (v: number) =>
    top2 + PLOT_H -
    ((Math.log10(Math.max(v, floor)) - decLo) / Math.max(1, decHi - decLo)) * PLOT_H;
  out.push(
    `<text x="${LEFT}" y="${top2 - 8}" font-weight="bold">Guest I/O latency (log scale)</text>`,
  );
  for (let d = decLo; d <= decHi; d++) {
    const yy = y2(10 ** d).toFixed(1);
    out.push(
      `<line x1="${LEFT}" y1="${yy}" x2="${LEFT + PLOT_W}" y2="${yy}" stroke="#eee"/>`,
      `<text x="${LEFT - 6}" y="${Number(yy) + 4}" text-anchor="end">${
        fmtMs(Number((10 ** d).toPrecision(1)))
      }</text>`,
    );
  }
  xAxis(top2);
  for (const s of chart.latency) {
    const c = color(s.label);
    const dots = s.points.map(([t, v]) =>
      `<circle cx="${x(t).toFixed(1)}" cy="${y2(v).toFixed(1)}" r="1.6"/>`
    );
    out.push(`<g fill="${c}" fill-opacity="0.55">${dots.join("")}</g>`);
  }

  // Legend.
  labels.forEach((label, i) => {
    const yy = top1 + 10 + i * 20;
    out.push(
      `<rect x="${LEFT + PLOT_W + 16}" y="${yy - 9}" width="14" height="10" fill="${
        color(label)
      }"/>`,
      `<text x="${LEFT + PLOT_W + 36}" y="${yy}">${esc(label)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
