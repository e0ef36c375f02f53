import { h, append, fmtTime } from './dom.js';
import { get, query, APIError } from './api.js';
import { setTitle } from './app.js';

// auditPage lists the tenant's audit records and whether the hash chain
// verifies (GET /v1/admin/audit, GET /v1/admin/audit:verify; admins only).
export async function auditPage(main, _params, signal) {
  setTitle('Audit log');
  main.append(h('h1', {}, 'Audit log'));
  const after = new URLSearchParams(location.search).get('after_seq') || '';
  let records;
  let next;
  try {
    ({ records, next_after_seq: next } = await get(`/v1/admin/audit${query({ limit: 100, after_seq: after })}`, signal));
  } catch (err) {
    if (err instanceof APIError && err.status === 403) {
      main.append(h('p', { id: 'audit-denied' }, 'The audit log is for the tenant_admin and platform_admin roles.'));
      return;
    }
    throw err;
  }
  const verify = h('p', { id: 'chain-status', role: 'status' }, 'Verifying the chain…');
  append(main, verify,
    h('table', {}, h('caption', {}, 'Audit records, oldest first'),
      h('thead', {}, h('tr', {}, ['Seq', 'Time', 'Principal', 'Action', 'Target', 'Outcome'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, records.length ? records.map((r) => h('tr', {},
        h('td', {}, r.seq), h('td', {}, fmtTime(r.time)), h('td', {}, r.on_behalf_of ? `${r.principal_id} for ${r.on_behalf_of}` : r.principal_id),
        h('td', {}, r.action), h('td', {}, r.target), h('td', {}, r.outcome))) : h('tr', {}, h('td', { colspan: 6 }, 'No records.')))),
    records.length === 100 ? h('p', {}, h('a', { href: `/console/audit${query({ after_seq: next })}` }, 'Next records')) : null);
  try {
    const { verify: v } = await get('/v1/admin/audit:verify', signal);
    verify.className = v.ok ? 'ok' : 'error';
    verify.textContent = v.ok
      ? `Chain verified${v.records != null ? `: ${v.records} records, head seq ${v.head_seq}` : ''} (${fmtTime(v.checked_at)}).`
      : `Chain broken${v.broken_seq ? ` at seq ${v.broken_seq}: ${v.reason}` : ''} (${fmtTime(v.checked_at)}).`;
  } catch (err) {
    verify.className = 'error';
    verify.textContent = `Chain not verified: ${err.message}`;
  }
}
