// A dependency-free line chart: throughput over time per mode, with failure markers.

export interface Series {
  label: string;
  points: [number, number][];
  markers?: number[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function lineChart(series: Series[], options: { title: string; xLabel: string; yLabel: string; width?: number; height?: number }): string {
  const W = options.width ?? 900, H = options.height ?? 480, L = 70, R = 220, T = 40, B = 50;
  const xs = series.flatMap((s) => s.points.map((p) => p[0])), ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xMax = Math.max(1e-9, ...xs), yMax = Math.max(1e-9, ...ys) * 1.1;
  const px = (x: number) => L + (x / xMax) * (W - L - R), py = (y: number) => H - B - (y / yMax) * (H - T - B);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  out.push(`<text x="${W / 2 - R / 2}" y="22" text-anchor="middle" font-size="15">${esc(options.title)}</text>`);
  for (let i = 0; i <= 5; i++) {
    const y = (yMax * i) / 5, x = (xMax * i) / 5;
    out.push(`<line x1="${L}" x2="${W - R}" y1="${py(y)}" y2="${py(y)}" stroke="#eee"/>`);
    out.push(`<text x="${L - 6}" y="${py(y) + 4}" text-anchor="end">${Math.round(y)}</text>`);
    out.push(`<text x="${px(x)}" y="${H - B + 18}" text-anchor="middle">${x.toFixed(1)}</text>`);
  }
  out.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${esc(options.xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(options.yLabel)}</text>`);
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="1.8"/>`);
    for (const m of s.markers ?? []) out.push(`<line x1="${px(m)}" x2="${px(m)}" y1="${T}" y2="${H - B}" stroke="${c}" stroke-dasharray="4 3"/>`);
    out.push(`<line x1="${W - R + 12}" x2="${W - R + 36}" y1="${T + 10 + i * 20}" y2="${T + 10 + i * 20}" stroke="${c}" stroke-width="3"/>`);
    out.push(`<text x="${W - R + 42}" y="${T + 14 + i * 20}">${esc(s.label)}</text>`);
  });
  out.push(`<text x="${W - R + 12}" y="${T + 24 + series.length * 20}" fill="#555">dashed: failure injected</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
