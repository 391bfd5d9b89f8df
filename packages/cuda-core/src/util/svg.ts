// Dependency-free SVG charts of a utilization study: a log-log roofline of every measured layer
// and a bar chart of per-layer utilization (FLOP-based, and NVML's beside it when sampled); and a
// general line chart with linear or log axes that other packages' reports draw with.
import type { StudyResult } from './study.js';

const palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const font = 'font-family="sans-serif"';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toPrecision(3));

/** 1.2e12 → "1.2 T" (SI prefixes for tick labels and tooltips). */
export function si(v: number): string {
  const units: [number, string][] = [[1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [scale, unit] of units) if (Math.abs(v) >= scale) return `${fmt(v / scale)} ${unit}`;
  return v >= 1 || v === 0 ? fmt(v) : String(Number(v.toPrecision(2)));
}

function text(x: number, y: number, s: string, attrs = ''): string {
  const size = attrs.includes('font-size') ? '' : ' font-size="12"';
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${font}${size} ${attrs}>${esc(s)}</text>`;
}

function svg(width: number, height: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="white"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

function legend(x: number, y: number, entries: { label: string; color: string; shape: 'dot' | 'line' | 'box' }[]): string[] {
  return entries.flatMap((e, i) => {
    const cy = y + i * 18;
    const mark =
      e.shape === 'dot' ? `<circle cx="${x + 6}" cy="${cy - 4}" r="4" fill="${e.color}"/>`
      : e.shape === 'line' ? `<line x1="${x}" y1="${cy - 4}" x2="${x + 14}" y2="${cy - 4}" stroke="${e.color}" stroke-width="2"/>`
      : `<rect x="${x}" y="${cy - 10}" width="12" height="12" fill="${e.color}"/>`;
    return [mark, text(x + 20, cy, e.label)];
  });
}

const networkColors = (r: StudyResult) => new Map([...new Set(r.layers.map((l) => l.network))].map((n, i) => [n, palette[i % palette.length]]));

/**
 * Roofline, log-log: x = arithmetic intensity (FLOP/byte), y = achieved FLOP/s; the roof is
 * min(peak, bandwidth × AI) (a flat peak line when the bandwidth is unknown); one dot per layer
 * and batch, coloured by network.
 */
export function rooflineSvg(result: StudyResult, title = `Roofline: ${result.device}, ${result.dtype}`): string {
  const W = 780, H = 500, left = 80, right = 190, top = 40, bottom = 60;
  const pw = W - left - right, ph = H - top - bottom;
  const { peakFlops: peak, bandwidth: bw } = result;
  const ais = result.layers.map((l) => l.intensity), perf = result.layers.map((l) => l.flopsPerSec);
  if (bw) ais.push(peak / bw); // keep the ridge point in view
  const x0 = Math.floor(Math.log10(Math.min(...ais, 1))), x1 = Math.ceil(Math.log10(Math.max(...ais, 10)));
  const y0 = Math.floor(Math.log10(Math.min(...perf, peak / 1e3))), y1 = Math.ceil(Math.log10(peak * 1.5));
  const sx = (ai: number) => left + ((Math.log10(ai) - x0) / (x1 - x0)) * pw;
  const sy = (f: number) => top + ph - ((Math.log10(Math.max(f, 10 ** y0)) - y0) / (y1 - y0)) * ph;

  const body: string[] = [text(W / 2 - right / 2, 22, title, 'text-anchor="middle" font-size="14"')];
  for (let e = x0; e <= x1; e++) {
    const x = sx(10 ** e);
    body.push(`<line x1="${x.toFixed(1)}" y1="${top}" x2="${x.toFixed(1)}" y2="${top + ph}" stroke="#ddd"/>`, text(x, top + ph + 18, si(10 ** e), 'text-anchor="middle"'));
  }
  for (let e = y0; e <= y1; e++) {
    const y = sy(10 ** e);
    body.push(`<line x1="${left}" y1="${y.toFixed(1)}" x2="${left + pw}" y2="${y.toFixed(1)}" stroke="#ddd"/>`, text(left - 8, y + 4, si(10 ** e), 'text-anchor="end"'));
  }
  body.push(
    `<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="black"/>`,
    text(left + pw / 2, H - 16, 'Arithmetic intensity (FLOP/byte)', 'text-anchor="middle"'),
    text(20, top + ph / 2, 'Performance (FLOP/s)', `text-anchor="middle" transform="rotate(-90 20 ${top + ph / 2})"`),
  );
  // The roof: sampled in log space (a straight line there), clamped to the plot's floor.
  const roof: string[] = [];
  for (let i = 0; i <= 200; i++) {
    const ai = 10 ** (x0 + ((x1 - x0) * i) / 200);
    roof.push(`${sx(ai).toFixed(1)},${sy(bw ? Math.min(peak, bw * ai) : peak).toFixed(1)}`);
  }
  body.push(`<polyline points="${roof.join(' ')}" fill="none" stroke="black" stroke-width="2"/>`);
  const colors = networkColors(result);
  for (const l of result.layers) {
    const tip = `${l.network} ${l.label} batch ${l.batch}: AI ${l.intensity.toFixed(1)}, ${si(l.flopsPerSec)}FLOP/s (${(100 * l.utilization).toFixed(1)}%)`;
    body.push(`<circle cx="${sx(l.intensity).toFixed(1)}" cy="${sy(l.flopsPerSec).toFixed(1)}" r="4" fill="${colors.get(l.network)}" fill-opacity="0.75"><title>${esc(tip)}</title></circle>`);
  }
  body.push(...legend(left + pw + 16, top + 12, [
    { label: `roof: ${si(peak)}FLOP/s`, color: 'black', shape: 'line' },
    ...(bw ? [{ label: `bandwidth ${si(bw)}B/s`, color: 'black', shape: 'line' as const }] : []),
    ...[...colors].map(([n, c]) => ({ label: n, color: c, shape: 'dot' as const })),
  ]));
  return svg(W, H, body);
}

/** Per-layer utilization bars (percent of peak); NVML utilization.gpu beside each when sampled. */
export function utilizationSvg(result: StudyResult, title = `Per-layer utilization: ${result.device}, ${result.dtype}`): string {
  const hasNvml = result.layers.some((l) => l.nvmlUtilization !== null);
  const bars = hasNvml ? 2 : 1, barW = 8, groupW = bars * barW + 6;
  const left = 90, right = 230, top = 40, bottom = 170, ph = 280;
  const pw = Math.max(300, result.layers.length * groupW);
  const W = left + pw + right, H = top + ph + bottom;
  const maxPct = Math.max(100, ...result.layers.map((l) => 100 * Math.max(l.utilization, l.nvmlUtilization ?? 0)));
  const yMax = Math.ceil(maxPct / 20) * 20;
  const sy = (pct: number) => top + ph - (pct / yMax) * ph;

  const body: string[] = [text(left + pw / 2, 22, title, 'text-anchor="middle" font-size="14"')];
  for (let p = 0; p <= yMax; p += 20) {
    body.push(`<line x1="${left}" y1="${sy(p).toFixed(1)}" x2="${left + pw}" y2="${sy(p).toFixed(1)}" stroke="#ddd"/>`, text(left - 8, sy(p) + 4, `${p}%`, 'text-anchor="end"'));
  }
  body.push(
    `<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="black"/>`,
    text(18, top + ph / 2, 'Utilization (% of peak)', `text-anchor="middle" transform="rotate(-90 18 ${top + ph / 2})"`),
  );
  const colors = networkColors(result);
  result.layers.forEach((l, i) => {
    const x = left + 3 + i * groupW;
    const values: [number | null, string, string][] = [[l.utilization, colors.get(l.network) as string, 'FLOP-based']];
    if (hasNvml) values.push([l.nvmlUtilization, '#999', 'NVML']);
    values.forEach(([v, color, what], j) => {
      if (v === null) return;
      const y = sy(100 * v);
      body.push(`<rect x="${x + j * barW}" y="${y.toFixed(1)}" width="${barW - 1}" height="${(top + ph - y).toFixed(1)}" fill="${color}"><title>${esc(`${l.network} ${l.label} batch ${l.batch}: ${what} ${(100 * v).toFixed(1)}%`)}</title></rect>`);
    });
    const lx = x + groupW / 2, ly = top + ph + 10;
    body.push(text(lx, ly, `${l.layer} b${l.batch}`, `font-size="10" text-anchor="end" transform="rotate(-60 ${lx.toFixed(1)} ${ly})"`));
  });
  body.push(...legend(left + pw + 16, top + 12, [
    ...[...colors].map(([n, c]) => ({ label: `${n} (FLOP-based)`, color: c, shape: 'box' as const })),
    ...(hasNvml ? [{ label: 'NVML utilization.gpu', color: '#999', shape: 'box' as const }] : []),
  ]));
  return svg(W, H, body);
}

export interface ChartSeries {
  label: string;
  /** [x, y] in data units, in drawing order. */
  points: [number, number][];
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  logX?: boolean;
  logY?: boolean;
  /** Axis ranges; default the data's (a log axis widens to whole decades). */
  xRange?: [number, number];
  yRange?: [number, number];
  /** Tick labels; default SI numbers. */
  xTick?: (v: number) => string;
  yTick?: (v: number) => string;
  width?: number;
  height?: number;
}

/** Tick values: decades on a log axis, 1/2/5 × 10^n steps (about six) on a linear one. */
function ticks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo) + 1e-9); e <= Math.ceil(Math.log10(hi) - 1e-9); e++) out.push(10 ** e);
    return out;
  }
  const raw = (hi - lo) / 6, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/**
 * Lines, one per series, on linear or log axes (points outside a log axis's positive range are
 * left out), with a legend on the right.
 */
export function lineChartSvg(series: ChartSeries[], o: LineChartOptions): string {
  const W = o.width ?? 820, H = o.height ?? 480, left = 80, right = 230, top = 40, bottom = 60;
  const pw = W - left - right, ph = H - top - bottom;
  const keep = (p: [number, number]) => Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!o.logX || p[0] > 0) && (!o.logY || p[1] > 0);
  const pts = series.map((s) => s.points.filter(keep));
  const all = pts.flat();
  const range = (i: 0 | 1, log: boolean | undefined, given?: [number, number]): [number, number] => {
    if (given) return given;
    const v = all.map((p) => p[i]);
    let lo = v.length ? Math.min(...v) : 1, hi = v.length ? Math.max(...v) : 10;
    if (log) [lo, hi] = [10 ** Math.floor(Math.log10(lo)), 10 ** Math.ceil(Math.log10(hi))];
    if (hi <= lo) hi = log ? lo * 10 : lo + 1;
    return [lo, hi];
  };
  const [x0, x1] = range(0, o.logX, o.xRange), [y0, y1] = range(1, o.logY, o.yRange);
  const t = (v: number, lo: number, hi: number, log?: boolean) => (log ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v - lo) / (hi - lo));
  const sx = (v: number) => left + t(v, x0, x1, o.logX) * pw;
  const sy = (v: number) => top + ph - t(v, y0, y1, o.logY) * ph;
  const body: string[] = [text(left + pw / 2, 22, o.title, 'text-anchor="middle" font-size="14"')];
  for (const v of ticks(x0, x1, !!o.logX)) {
    const x = sx(v).toFixed(1);
    body.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + ph}" stroke="#ddd"/>`, text(sx(v), top + ph + 18, (o.xTick ?? si)(v), 'text-anchor="middle"'));
  }
  for (const v of ticks(y0, y1, !!o.logY)) {
    const y = sy(v).toFixed(1);
    body.push(`<line x1="${left}" y1="${y}" x2="${left + pw}" y2="${y}" stroke="#ddd"/>`, text(left - 8, sy(v) + 4, (o.yTick ?? si)(v), 'text-anchor="end"'));
  }
  body.push(
    `<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="black"/>`,
    text(left + pw / 2, H - 16, o.xLabel, 'text-anchor="middle"'),
    text(20, top + ph / 2, o.yLabel, `text-anchor="middle" transform="rotate(-90 20 ${top + ph / 2})"`),
  );
  // Clipped to the plot area, so a point beyond a given range does not draw over the axes.
  body.push(`<clipPath id="plot"><rect x="${left}" y="${top}" width="${pw}" height="${ph}"/></clipPath>`);
  pts.forEach((p, i) => {
    if (p.length === 0) return;
    const d = p.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    body.push(`<polyline points="${d}" fill="none" stroke="${palette[i % palette.length]}" stroke-width="1.8" clip-path="url(#plot)"><title>${esc(series[i].label)}</title></polyline>`);
  });
  body.push(...legend(left + pw + 16, top + 12, series.map((s, i) => ({ label: s.label, color: palette[i % palette.length], shape: 'line' as const }))));
  return svg(W, H, body);
}
