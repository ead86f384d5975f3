// Bar charts as hand-written SVG.
//
// Why not a charting library: the three charts are plain bar charts over
// figures the core has already aggregated (at most 10 products, the stores
// of one file, 24 hours). This file is ~100 lines with no dependency; the
// smallest well-kept libraries (Chart.js, uPlot, ...) are 40-200 KB that
// would have to be vendored into www/ (no build step, no CDN from a shop's
// till PC), draw on a canvas a screen reader cannot read, and a test cannot
// inspect. SVG is text: it scales, prints, carries a <title> per bar for a
// tooltip, and each chart has a text alternative.

const SVG = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function truncate(s, n) {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/**
 * Horizontal bars, one per datum, labelled on the left, value on the right.
 * @param {{title: string, data: {label: string, value: number, text: string}[], idPrefix: string}} opts
 */
export function horizontalBars({ title, data, idPrefix }) {
  const rowH = 22;
  const labelW = 236;
  const barW = 190;
  const valueW = 104;
  const width = labelW + barW + valueW;
  const height = Math.max(1, data.length) * rowH + 4;
  const max = Math.max(1, ...data.map((d) => d.value));
  const svg = el('svg', {
    viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img',
    'aria-labelledby': `${idPrefix}-title`, class: 'chart', 'data-chart': idPrefix,
  });
  svg.append(el('title', { id: `${idPrefix}-title` }, `${title}: ${data.map((d) => `${d.label} ${d.text}`).join('; ') || 'no data'}`));
  data.forEach((d, i) => {
    const y = i * rowH + 2;
    const w = Math.max(1, (d.value / max) * barW);
    const g = el('g', { class: 'bar' });
    g.append(el('title', {}, `${d.label}: ${d.text}`));
    g.append(el('text', { x: labelW - 6, y: y + rowH * 0.68, 'text-anchor': 'end', class: 'label' }, truncate(d.label, 34)));
    g.append(el('rect', { x: labelW, y: y + 3, width: w.toFixed(1), height: rowH - 6, rx: 2 }));
    g.append(el('text', { x: labelW + w + 4, y: y + rowH * 0.68, class: 'value' }, d.text));
    svg.append(g);
  });
  return svg;
}

/**
 * Vertical columns over a fixed category axis (the 24 hours of the day).
 * @param {{title: string, data: {label: string, value: number, text: string}[], idPrefix: string, every?: number}} opts
 */
export function columns({ title, data, idPrefix, every = 3 }) {
  const width = 500;
  const height = 170;
  const base = 145;
  const top = 10;
  const left = 14; // room for the first label, centred under its column
  const slot = (width - 2 * left) / Math.max(1, data.length);
  const max = Math.max(1, ...data.map((d) => d.value));
  const svg = el('svg', {
    viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img',
    'aria-labelledby': `${idPrefix}-title`, class: 'chart', 'data-chart': idPrefix,
  });
  const busiest = data.reduce((a, d) => (d.value > a.value ? d : a), data[0] || { label: '', value: 0, text: '' });
  svg.append(el('title', { id: `${idPrefix}-title` }, `${title}; busiest ${busiest.label} with ${busiest.text}`));
  svg.append(el('line', { x1: 0, x2: width, y1: base, y2: base, class: 'axis' }));
  data.forEach((d, i) => {
    const h = (d.value / max) * (base - top);
    const x = left + i * slot;
    const g = el('g', { class: 'bar' });
    g.append(el('title', {}, `${d.label}: ${d.text}`));
    if (d.value > 0) {
      g.append(el('rect', { x: (x + slot * 0.12).toFixed(1), y: (base - h).toFixed(1), width: (slot * 0.76).toFixed(1), height: h.toFixed(1), rx: 1 }));
    }
    if (i % every === 0) {
      g.append(el('text', { x: (x + slot / 2).toFixed(1), y: base + 16, 'text-anchor': 'middle', class: 'label' }, d.label));
    }
    svg.append(g);
  });
  return svg;
}
