import { h, clear, fmtTime, fmtDuration, fmtUSD, fmtNumber, json, statusBadge } from './dom.js';
import { api, get, node, streamEvents, APIError, TERMINAL } from './api.js';
import { setTitle } from './app.js';

const ACTIVE = new Set(['queued', 'running', 'requires_action']);

// traceLink links a trace id to the configured trace view (http(s) only).
function traceLink(traceID) {
  if (!traceID) return '—';
  if (!/^https?:\/\//.test(node.traceURL)) return h('code', {}, traceID);
  return h('a', { href: node.traceURL.replaceAll('{trace_id}', encodeURIComponent(traceID)), rel: 'noopener noreferrer', target: '_blank' }, traceID);
}

function traceIDOf(traceparent) {
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent || '');
  return m ? m[1] : '';
}

function pre(label, value) {
  return h('details', { class: 'payload' }, h('summary', {}, label), h('pre', {}, typeof value === 'string' ? value : json(value)));
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v != null && v !== '').flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// eventBody describes one event: what a person wants to see of each type.
function eventBody(ev, modelCall) {
  const p = ev.payload || {};
  switch (ev.type) {
    case 'agentos.model.requested':
      return facts([['Model', p.model_ref], ['Operation', p.operation], ['Messages', p.input_summary?.messages], ['Tools offered', p.input_summary?.has_tools ? 'yes' : 'no']]);
    case 'agentos.model.completed': {
      const u = p.usage || {};
      const cost = h('span', { 'data-cost-index': modelCall }, '—');
      return facts([['Model', p.route?.model || p.model_ref], ['Backend', p.route?.backend], ['Status', p.status],
        ['Tokens', `${fmtNumber(u.input_tokens)} in · ${fmtNumber(u.output_tokens)} out · ${fmtNumber(u.total_tokens)} total`],
        ['Latency', fmtDuration(p.latency_ms)], ['Cost', cost],
        ['Policy', p.policy_outcome?.decision]]);
    }
    case 'agentos.tool.call.requested':
      return [facts([['Tool', p.tool_id], ['Call', p.tool_call_id], ['Timeout', fmtDuration(p.timeout_ms)]]), pre('Arguments', p.input ?? p.arguments ?? {})];
    case 'agentos.tool.call.completed':
      return [facts([['Tool', p.tool_id], ['Status', p.status], ['Duration', fmtDuration(p.duration_ms)]]),
        p.error ? h('p', { class: 'error' }, `${p.error.code || 'error'}: ${p.error.message || ''}`) : null,
        pre('Result', p.output ?? null)];
    case 'agentos.run.failed':
      return h('p', { class: 'error' }, `${p.error?.code}: ${p.error?.message}`);
    case 'agentos.run.completed':
      return h('p', {}, p.output?.text ?? '');
    case 'agentos.run.requires_action': {
      const a = p.required_action || {};
      return [facts([['Waiting on', a.tool_id], ['Reason', a.reason], ['Deadline', fmtTime(a.deadline)]]), pre('Arguments', a.arguments ?? {})];
    }
    case 'agentos.run.step.started':
      return facts([['Step', p.step_kind], ['Name', p.name]]);
    default:
      return pre('Payload', p);
  }
}

// runPage shows a run and its timeline: every event (token deltas are
// counted, not listed), live while the run goes on, with cancel and the
// approve / reject decision of a run that waits on a person.
export async function runPage(main, [runID], signal) {
  setTitle(`Run ${runID}`);
  let run;
  try {
    ({ run } = await get(`/v1/runs/${encodeURIComponent(runID)}`, signal));
  } catch (err) {
    if (err instanceof APIError && err.status === 404) {
      setTitle('Run not found');
      main.append(h('h1', {}, 'Run not found'),
        h('p', { id: 'not-found' }, `There is no run ${runID} in this tenant.`),
        h('p', {}, h('a', { href: '/console/runs' }, 'Back to runs')));
      return;
    }
    throw err;
  }

  const summary = h('section', { 'aria-labelledby': 'summary-h' });
  const actions = h('div', { class: 'actions' });
  const note = h('p', { role: 'status', 'aria-live': 'polite', id: 'action-status' });
  const timeline = h('ol', { class: 'timeline', id: 'timeline' });
  const deltas = h('p', { class: 'muted' });
  let deltaCount = 0;
  let modelCalls = 0;
  let costs = [];
  // fillCosts puts each model call's cost, from the usage ledger (nth
  // record of the run ↔ nth model call), into its timeline entry.
  function fillCosts() {
    for (const el of timeline.querySelectorAll('[data-cost-index]')) {
      const c = costs[Number(el.getAttribute('data-cost-index'))];
      el.textContent = c == null ? '—' : fmtUSD(c);
    }
  }
  let traceID = traceIDOf(run.traceparent);

  function drawSummary() {
    clear(summary).append(h('h2', { id: 'summary-h' }, 'Summary'), facts([
      ['Status', statusBadge(run.status)], ['Agent', run.agent_id], ['Created', fmtTime(run.created_at)],
      ['Started', fmtTime(run.started_at)], ['Completed', fmtTime(run.completed_at)],
      ['Duration', run.completed_at ? fmtDuration(new Date(run.completed_at) - new Date(run.created_at)) : '—'],
      ['Steps', run.summary?.steps_total], ['Model calls', run.summary?.model_calls_total], ['Tool calls', run.summary?.tool_calls_total],
      ['Trace', traceLink(traceID)],
      ['Output', run.output?.text], ['Error', run.error ? `${run.error.code}: ${run.error.message}` : null],
    ]));
    clear(actions);
    if (ACTIVE.has(run.status)) actions.append(h('button', { type: 'button', id: 'cancel', onclick: () => act('cancel') }, 'Cancel run'));
    if (run.status === 'requires_action') {
      const comment = h('input', { id: 'comment', type: 'text', name: 'comment' });
      actions.append(h('button', { type: 'button', id: 'approve', onclick: () => act('resume', { decision: 'approve' }) }, 'Approve'),
        h('label', { for: 'comment' }, 'Comment'), comment,
        h('button', { type: 'button', id: 'reject', onclick: () => act('resume', { decision: 'reject', comment: comment.value || undefined }) }, 'Reject'));
    }
  }

  async function act(action, body = {}) {
    note.textContent = 'Sending…';
    try {
      ({ run } = await api('POST', `/v1/runs/${encodeURIComponent(runID)}:${action}`, body));
      note.textContent = action === 'cancel' ? 'Run canceled.' : `Decision sent: ${body.decision}.`;
      drawSummary();
    } catch (err) {
      note.textContent = `${err.code || 'error'}: ${err.message}`;
    }
  }

  async function refresh() {
    try {
      ({ run } = await get(`/v1/runs/${encodeURIComponent(runID)}`, signal));
      const { report } = await get(`/v1/analytics/usage?run_id=${encodeURIComponent(runID)}&since=${encodeURIComponent(run.created_at)}`, signal);
      costs = (report.records || []).filter((r) => r.operation === 'chat').map((r) => r.cost_usd);
      drawSummary();
      fillCosts();
    } catch { /* shown on the next event */ }
  }

  main.append(h('h1', {}, 'Run ', h('code', {}, runID)), actions, note, summary,
    h('section', { 'aria-labelledby': 'timeline-h' }, h('h2', { id: 'timeline-h' }, 'Timeline'), deltas, timeline));
  drawSummary();
  await refresh();

  await streamEvents(runID, (ev) => {
    if (ev.type === 'agentos.model.delta') {
      deltas.textContent = `${++deltaCount} streamed token deltas (not listed)`;
      return;
    }
    if (!traceID) { traceID = traceIDOf(ev.trace?.traceparent); }
    timeline.append(h('li', { class: `event ${ev.type.replace(/[^a-z]/g, '-')}`, 'data-type': ev.type },
      h('div', { class: 'event-head' }, h('span', { class: 'seq' }, `#${ev.sequence}`), ' ',
        h('time', { datetime: ev.time }, fmtTime(ev.time)), ' ', h('strong', {}, ev.type.replace(/^agentos\./, ''))),
      eventBody(ev, ev.type === 'agentos.model.completed' ? modelCalls++ : -1)));
    fillCosts();
    if (ev.type.startsWith('agentos.run.') && ev.payload?.status && ev.payload.status !== run.status) {
      run = { ...run, status: ev.payload.status };
      drawSummary();
    }
    if (TERMINAL.has(ev.type) || ev.type === 'agentos.run.requires_action') refresh();
  }, signal);
}
