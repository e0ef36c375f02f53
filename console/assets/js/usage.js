import { h, clear, fmtUSD, fmtNumber, fmtDuration } from './dom.js';
import { get, query } from './api.js';
import { navigate, setTitle } from './app.js';
import { chart } from './chart.js';

const RANGES = {
  '1h': { label: 'Last hour', ms: 3600e3, bucket: 'minute' },
  '24h': { label: 'Last 24 hours', ms: 86400e3, bucket: 'hour' },
  '7d': { label: 'Last 7 days', ms: 7 * 86400e3, bucket: 'day' },
  '30d': { label: 'Last 30 days', ms: 30 * 86400e3, bucket: 'day' },
};
const OUTCOMES = [['completed', 'Completed', 's-completed'], ['failed', 'Failed', 's-failed'], ['canceled', 'Canceled', 's-canceled'],
  ['running', 'Running', 's-running'], ['queued', 'Queued', 's-queued'], ['requires_action', 'Awaiting approval', 's-requires_action']];
const REFRESH_MS = 5000;

// usagePage charts the tenant's tokens, cost, runs by outcome and run
// latency percentiles over time (GET /v1/analytics/usage), refreshed
// every few seconds.
export async function usagePage(main, _params, signal) {
  setTitle('Usage');
  const range = RANGES[new URLSearchParams(location.search).get('range')] ? new URLSearchParams(location.search).get('range') : '1h';
  const pick = h('select', { id: 'range', onchange: (e) => navigate(`/console/usage${query({ range: e.target.value })}`, true) },
    Object.entries(RANGES).map(([k, r]) => h('option', { value: k, selected: k === range }, r.label)));
  const body = h('div', { id: 'usage-body' });
  main.append(h('h1', {}, 'Usage'), h('form', { class: 'filters', onsubmit: (e) => e.preventDefault() }, h('label', { for: 'range' }, 'Period'), pick), body);

  async function load() {
    const r = RANGES[range];
    const since = new Date(Date.now() - r.ms).toISOString().replace(/\.\d+Z$/, 'Z');
    const { report } = await get(`/v1/analytics/usage${query({ since, bucket: r.bucket })}`, signal);
    const times = report.series.map((b) => b.start);
    const t = report.totals;
    clear(body).append(
      h('section', { 'aria-labelledby': 'totals-h' }, h('h2', { id: 'totals-h' }, 'Totals'),
        h('dl', { class: 'facts totals' },
          h('dt', {}, 'Runs'), h('dd', { id: 'total-runs' }, fmtNumber(t.runs)),
          h('dt', {}, 'Model requests'), h('dd', { id: 'total-requests' }, fmtNumber(t.requests)),
          h('dt', {}, 'Tokens'), h('dd', { id: 'total-tokens' }, fmtNumber(t.total_tokens)),
          h('dt', {}, 'Cost'), h('dd', { id: 'total-cost' }, fmtUSD(t.cost_usd)),
          h('dt', {}, 'Run latency p50 / p95 / p99'), h('dd', {}, t.run_latency_ms
            ? `${fmtDuration(t.run_latency_ms.p50)} / ${fmtDuration(t.run_latency_ms.p95)} / ${fmtDuration(t.run_latency_ms.p99)}` : '—')),
        report.usage_scope === 'principal' ? h('p', { class: 'muted' }, 'Tokens and cost are your own usage; a tenant admin sees the whole tenant.') : null,
        report.runs_truncated ? h('p', { class: 'muted' }, 'Only the newest 5000 runs of the period are counted.') : null),
      h('section', { class: 'charts', 'aria-label': 'Charts' },
        chart({ id: 'chart-tokens', title: 'Tokens', times, fmt: fmtNumber, series: [
          { name: 'Input tokens', cls: 's-input', values: report.series.map((b) => b.input_tokens) },
          { name: 'Output tokens', cls: 's-output', values: report.series.map((b) => b.output_tokens) }] }),
        chart({ id: 'chart-cost', title: 'Cost (USD)', times, fmt: (v) => fmtUSD(v), series: [
          { name: 'Cost', cls: 's-cost', values: report.series.map((b) => b.cost_usd) }] }),
        chart({ id: 'chart-runs', title: 'Runs by outcome', times, fmt: fmtNumber, series: OUTCOMES.map(([k, name, cls]) => (
          { name, cls, values: report.series.map((b) => b.runs_by_status[k] || 0) })) }),
        chart({ id: 'chart-latency', title: 'Run latency percentiles', kind: 'lines', times, fmt: (v) => fmtDuration(v), series: [
          { name: 'p50', cls: 's-p50', values: report.series.map((b) => b.run_latency_ms?.p50 ?? null) },
          { name: 'p95', cls: 's-p95', values: report.series.map((b) => b.run_latency_ms?.p95 ?? null) },
          { name: 'p99', cls: 's-p99', values: report.series.map((b) => b.run_latency_ms?.p99 ?? null) }] })));
  }

  await load();
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
}
