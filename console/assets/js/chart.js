// Inline SVG charts: stacked bars and lines over time buckets. Each chart
// is a figure with a caption, an SVG with a title for screen readers, a
// legend, and its numbers in a table under "Data".

import { h, s, fmtTime } from './dom.js';

const W = 640;
const H = 220;
const PAD = { top: 12, right: 12, bottom: 28, left: 56 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axis(max, fmt) {
  const g = s('g', { class: 'axis' });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = PAD.top + (H - PAD.top - PAD.bottom) * (1 - i / 4);
    g.append(s('line', { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: 'grid' }),
      s('text', { x: PAD.left - 6, y: y + 4, 'text-anchor': 'end' }, fmt(v)));
  }
  return g;
}

function xLabels(labels) {
  const g = s('g', { class: 'axis' });
  const n = labels.length;
  const step = Math.max(1, Math.ceil(n / 6));
  const bw = (W - PAD.left - PAD.right) / Math.max(n, 1);
  for (let i = 0; i < n; i += step) {
    g.append(s('text', { x: PAD.left + bw * (i + 0.5), y: H - 8, 'text-anchor': 'middle' }, labels[i]));
  }
  return g;
}

function legend(series) {
  return h('ul', { class: 'legend' }, series.map((se) => h('li', {}, h('span', { class: `swatch ${se.cls}`, 'aria-hidden': 'true' }), se.name)));
}

function dataTable(title, labels, series, fmt) {
  return h('details', { class: 'data' }, h('summary', {}, 'Data'),
    h('table', {}, h('caption', {}, title),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Time'), series.map((se) => h('th', { scope: 'col' }, se.name)))),
      h('tbody', {}, labels.map((l, i) => h('tr', {}, h('th', { scope: 'row' }, l), series.map((se) => h('td', {}, se.values[i] == null ? '—' : fmt(se.values[i]))))))));
}

// chart draws series (each {name, cls, values}) over times as stacked
// bars (kind "bars") or lines (kind "lines"; null values leave a gap).
export function chart({ id, title, times, series, kind = 'bars', fmt = String }) {
  const labels = times.map((t) => shortTime(t, times));
  const n = times.length;
  const sums = times.map((_, i) => series.reduce((a, se) => a + (se.values[i] || 0), 0));
  const max = niceMax(kind === 'bars' ? Math.max(0, ...sums) : Math.max(0, ...series.flatMap((se) => se.values.filter((v) => v != null))));
  const plotH = H - PAD.top - PAD.bottom;
  const bw = (W - PAD.left - PAD.right) / Math.max(n, 1);
  const y = (v) => PAD.top + plotH * (1 - v / max);
  const titleID = `${id}-title`;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': titleID, class: `chart ${kind}`, id },
    s('title', { id: titleID }, title), axis(max, fmt), xLabels(labels));
  if (kind === 'bars') {
    for (let i = 0; i < n; i++) {
      let base = 0;
      for (const se of series) {
        const v = se.values[i] || 0;
        if (v > 0) {
          svg.append(s('rect', { class: `bar ${se.cls}`, x: PAD.left + bw * i + bw * 0.15, width: Math.max(bw * 0.7, 1),
            y: y(base + v), height: Math.max(plotH * (v / max), 0.5), 'data-value': v }));
        }
        base += v;
      }
    }
  } else {
    for (const se of series) {
      let d = '';
      se.values.forEach((v, i) => {
        if (v == null) return;
        const x = PAD.left + bw * (i + 0.5);
        d += `${d && se.values[i - 1] != null ? 'L' : 'M'}${x.toFixed(1)} ${y(v).toFixed(1)} `;
        svg.append(s('circle', { class: `dot ${se.cls}`, cx: x, cy: y(v), r: 3 }));
      });
      if (d) svg.append(s('path', { class: `line ${se.cls}`, d }));
    }
  }
  return h('figure', { class: 'chart-box' }, h('figcaption', {}, title), svg, legend(series), dataTable(title, labels, series, fmt));
}

function shortTime(t, all) {
  const iso = fmtTime(t);
  const spanDays = all.length > 1 ? (new Date(all[all.length - 1]) - new Date(all[0])) / 86400e3 : 0;
  return spanDays >= 2 ? iso.slice(5, 10) : iso.slice(11, 16);
}
