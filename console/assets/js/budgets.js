import { h, fmtTime, fmtUSD, fmtNumber } from './dom.js';
import { get } from './api.js';
import { setTitle } from './app.js';

function meter(id, label, used, max, fmt) {
  if (!(max > 0)) return [h('dt', {}, label), h('dd', {}, `${fmt(used)} used · no limit`)];
  return [h('dt', {}, h('label', { for: id }, label)),
    h('dd', {}, h('meter', { id, min: 0, max, value: Math.min(used, max), high: max * 0.8, optimum: 0 }), ' ',
      `${fmt(used)} of ${fmt(max)} (${((100 * used) / max).toFixed(1)} %)`)];
}

// budgetsPage shows the token budget's current window and the tenant's
// quotas, from the usage report (so any tenant user sees its own limits).
export async function budgetsPage(main, _params, signal) {
  setTitle('Budgets and quotas');
  const { report } = await get('/v1/analytics/usage?bucket=day', signal);
  const b = report.budget;
  const q = report.quotas || {};
  const rows = [
    ['Concurrent runs', q.runs?.max_concurrent_runs],
    ['Run creations per second', q.runs?.run_create_qps],
    ['Run creation burst', q.runs?.run_create_burst],
    ['Tool calls per minute', q.tools?.tool_calls_per_minute],
    ['Tokens per model request', q.models?.max_tokens_per_request],
    ['Model requests per minute', q.models?.max_requests_per_minute],
    ['Memory bytes', q.storage?.max_memory_bytes],
  ];
  main.append(h('h1', {}, 'Budgets and quotas'),
    h('section', { 'aria-labelledby': 'budget-h' }, h('h2', { id: 'budget-h' }, 'Token budget'),
      b ? [h('p', {}, `Window: one ${b.window}, started ${fmtTime(b.window_start)}.`),
        h('dl', { class: 'facts' }, meter('budget-tokens', 'Tokens', b.used_tokens, b.max_tokens, fmtNumber),
          meter('budget-cost', 'Cost', b.used_cost_usd, b.max_cost_usd, fmtUSD))]
        : h('p', {}, 'This tenant has no token budget.')),
    h('section', { 'aria-labelledby': 'quotas-h' }, h('h2', { id: 'quotas-h' }, 'Quotas'),
      h('table', {}, h('caption', {}, `Quotas of tenant ${report.tenant_id} (0 or empty: the node default)`),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Quota'), h('th', { scope: 'col' }, 'Limit'))),
        h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v ? fmtNumber(v) : 'node default')))))));
}
