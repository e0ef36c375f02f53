// Small DOM helpers. Everything from the API goes in as text nodes or
// attribute values, never parsed as HTML, so no response can inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h creates an HTML element: h('a', {href}, 'text', child...).
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s creates an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function fmtDuration(ms) {
  if (ms == null || isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

export function fmtUSD(v) {
  return v == null ? '—' : `$${Number(v).toFixed(v < 0.01 && v > 0 ? 6 : 4)}`;
}

export function fmtNumber(v) {
  return v == null ? '—' : Number(v).toLocaleString('en-US');
}

export function json(v) {
  return JSON.stringify(v, null, 2);
}

// statusBadge is a run status as text with a class for its colour.
export function statusBadge(status) {
  return h('span', { class: `badge status-${String(status).replace(/[^a-z_]/g, '')}`, 'data-status': status }, status);
}

// runLink is a link to a run's page; ids are URL-encoded.
export function runLink(runID, text) {
  return h('a', { href: `/console/runs/${encodeURIComponent(runID)}` }, text || runID);
}

// append adds children to el as h does: strings as text, null and false
// left out (the DOM's own append would write "null").
export function append(el, ...children) {
  return build(el, {}, children);
}
