import { h, append, fmtTime, json, runLink } from './dom.js';
import { get, query, APIError } from './api.js';
import { setTitle } from './app.js';

export async function threadsPage(main, _params, signal) {
  setTitle('Threads');
  const cursor = new URLSearchParams(location.search).get('cursor') || '';
  const { threads, next_cursor: next } = await get(`/v1/threads${query({ limit: 50, cursor })}`, signal);
  const rows = threads.map((t) => h('tr', {},
    h('td', {}, h('a', { href: `/console/threads/${encodeURIComponent(t.thread_id)}` }, t.thread_id)),
    h('td', {}, t.active_run_id ? runLink(t.active_run_id) : '—'),
    h('td', {}, Object.entries(t.metadata || {}).map(([k, v]) => `${k}=${v}`).join(', ') || '—'),
    h('td', {}, fmtTime(t.created_at)), h('td', {}, fmtTime(t.updated_at))));
  append(main, h('h1', {}, 'Threads'),
    h('table', {}, h('caption', {}, 'Conversation threads'),
      h('thead', {}, h('tr', {}, ['Thread', 'Active run', 'Metadata', 'Created', 'Updated'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 5 }, 'No threads yet.')))),
    next ? h('p', {}, h('a', { href: `/console/threads${query({ cursor: next })}` }, 'Older threads')) : null);
}

export async function threadPage(main, [threadID], signal) {
  setTitle(`Thread ${threadID}`);
  let thread;
  try {
    ({ thread } = await get(`/v1/threads/${encodeURIComponent(threadID)}`, signal));
  } catch (err) {
    if (err instanceof APIError && err.status === 404) {
      main.append(h('h1', {}, 'Thread not found'), h('p', { id: 'not-found' }, `There is no thread ${threadID} in this tenant.`));
      return;
    }
    throw err;
  }
  const { messages } = await get(`/v1/threads/${encodeURIComponent(threadID)}/messages?limit=200`, signal);
  main.append(h('h1', {}, 'Thread ', h('code', {}, threadID)),
    h('p', {}, `Created ${fmtTime(thread.created_at)}`, thread.active_run_id ? [' · active run ', runLink(thread.active_run_id)] : null),
    h('ol', { class: 'messages' }, messages.map((m) => h('li', { class: `message role-${String(m.role).replace(/[^a-z]/g, '')}` },
      h('div', { class: 'event-head' }, h('strong', {}, m.role), ' ', h('time', { datetime: m.created_at }, fmtTime(m.created_at)),
        m.run_id ? [' · ', runLink(m.run_id)] : null),
      m.content ? h('p', { class: 'content' }, m.content) : null,
      (m.tool_calls || []).map((c) => h('details', { class: 'payload' }, h('summary', {}, `Tool call ${c.tool_id}`), h('pre', {}, json(c.arguments))))))));
}
