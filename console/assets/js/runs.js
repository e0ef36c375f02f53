import { h, clear, fmtTime, fmtDuration, statusBadge, runLink } from './dom.js';
import { get, query, streamEvents } from './api.js';
import { navigate, setTitle } from './app.js';

const STATUSES = ['queued', 'running', 'requires_action', 'completed', 'failed', 'canceled'];
const ACTIVE = new Set(['queued', 'running', 'requires_action']);
const SINCE = [['', 'Any time'], ['15m', 'Last 15 minutes'], ['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days']];
const SINCE_MS = { '15m': 15 * 60e3, '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };
const MAX_STREAMS = 20; // live streams held open at once, one per active run shown
const POLL_MS = 2000; // new runs are found by polling: the API streams events per run

function duration(run) {
  if (!run.completed_at) return '—';
  return fmtDuration(new Date(run.completed_at) - new Date(run.created_at));
}

function select(id, label, options, value) {
  return [h('label', { for: id }, label),
    h('select', { id, name: id }, options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)))];
}

// runsPage lists the tenant's runs, newest first, filtered by agent and
// status (by the API) and creation time (here). It polls for new runs and
// follows each active run's event stream, so statuses change live.
export async function runsPage(main, _params, signal) {
  setTitle('Runs');
  const q = new URLSearchParams(location.search);
  const filter = { agent_id: q.get('agent_id') || '', status: q.get('status') || '', since: q.get('since') || '' };
  const { agents } = await get('/v1/agents', signal);

  const form = h('form', { class: 'filters', onchange: () => {
    const f = new FormData(form);
    navigate(`/console/runs${query({ agent_id: f.get('agent_id'), status: f.get('status'), since: f.get('since') })}`, true);
  }, onsubmit: (e) => e.preventDefault() },
  select('agent_id', 'Agent', [['', 'All agents'], ...agents.map((a) => [a.agent_id, a.agent_id])], filter.agent_id),
  select('status', 'Status', [['', 'Any status'], ...STATUSES.map((s) => [s, s])], filter.status),
  select('since', 'Created', SINCE, filter.since));

  // Not a live region: it changes every poll, which a screen reader would
  // announce each time.
  const live = h('p', { class: 'live' }, 'Live');
  const tbody = h('tbody', { id: 'runs-body' });
  const table = h('table', { class: 'runs' },
    h('caption', {}, 'Runs, newest first'),
    h('thead', {}, h('tr', {}, ['Run', 'Agent', 'Status', 'Created', 'Duration', 'Steps', 'Tool calls'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  main.append(h('h1', {}, 'Runs'), form, live, table);

  const runs = new Map(); // run_id → run, as last seen
  const watching = new Set();

  function rowOf(run) {
    return h('tr', { 'data-run-id': run.run_id },
      h('td', {}, runLink(run.run_id)), h('td', {}, run.agent_id), h('td', { class: 'status' }, statusBadge(run.status)),
      h('td', {}, fmtTime(run.created_at)), h('td', {}, duration(run)),
      h('td', {}, run.summary?.steps_total ?? 0), h('td', {}, run.summary?.tool_calls_total ?? 0));
  }

  function draw() {
    const since = SINCE_MS[filter.since] ? Date.now() - SINCE_MS[filter.since] : 0;
    const shown = [...runs.values()]
      .filter((r) => new Date(r.created_at).getTime() >= since)
      .filter((r) => !filter.status || r.status === filter.status)
      .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    clear(tbody);
    if (!shown.length) tbody.append(h('tr', {}, h('td', { colspan: 7 }, 'No runs match.')));
    for (const r of shown) tbody.append(rowOf(r));
  }

  async function refreshRun(id) {
    try {
      const { run } = await get(`/v1/runs/${encodeURIComponent(id)}`, signal);
      runs.set(id, run);
      draw();
    } catch { /* the next poll tries again */ }
  }

  function watch(run) {
    if (watching.has(run.run_id) || watching.size >= MAX_STREAMS || !ACTIVE.has(run.status)) return;
    watching.add(run.run_id);
    streamEvents(run.run_id, (ev) => {
      const cur = runs.get(run.run_id);
      const status = ev.payload?.status;
      if (cur && ev.type.startsWith('agentos.run.') && status && cur.status !== status) {
        runs.set(run.run_id, { ...cur, status });
        draw();
      }
      if (/^agentos\.run\.(completed|failed|canceled|requires_action|resumed)$/.test(ev.type)) refreshRun(run.run_id);
    }, signal).catch(() => {}).finally(() => { watching.delete(run.run_id); });
  }

  async function poll() {
    try {
      const { runs: page } = await get(`/v1/runs${query({ agent_id: filter.agent_id, status: filter.status, limit: 100 })}`, signal);
      if (filter.status) runs.clear();
      for (const r of page) {
        const known = runs.get(r.run_id);
        // A streamed status may be newer than the listing's.
        if (!known || !ACTIVE.has(r.status) || known.status === r.status || !watching.has(r.run_id)) runs.set(r.run_id, r);
        watch(runs.get(r.run_id));
      }
      live.textContent = `Live · updated ${new Date().toLocaleTimeString('en-GB')}`;
      draw();
    } catch (err) {
      if (!signal.aborted) live.textContent = `Live updates paused: ${err.message}`;
    }
  }

  await poll();
  const timer = setInterval(poll, POLL_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
}
