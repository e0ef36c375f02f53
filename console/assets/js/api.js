// API access with the visitor's credentials. The token lives in
// sessionStorage (gone when the tab closes). In demo mode, with no token,
// requests name the demo tenant with X-Tenant-Id, as the README's curl
// examples do; the API accepts that only in demo and dev mode.

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') || '';

export const node = {
  mode: meta('agentos-mode'),
  defaultTenant: meta('agentos-default-tenant'),
  traceURL: meta('agentos-trace-url'),
};

function stored(key) {
  return {
    get: () => sessionStorage.getItem(key) || '',
    set: (v) => (v ? sessionStorage.setItem(key, v) : sessionStorage.removeItem(key)),
  };
}

const tokenStore = stored('agentos.console.token');
const tenantStore = stored('agentos.console.tenant');
const adminStore = stored('agentos.console.admin');

export const session = {
  get token() { return tokenStore.get(); },
  set token(v) { tokenStore.set(v); },
  // tenant is the tenant a platform admin acts for (sent as X-Tenant-Id).
  get tenant() { return tenantStore.get(); },
  set tenant(v) { tenantStore.set(v); },
  // tenants is the admin's tenant list (JSON), empty for other callers.
  get tenants() { try { return JSON.parse(adminStore.get() || '[]'); } catch { return []; } },
  set tenants(v) { adminStore.set(v && v.length ? JSON.stringify(v) : ''); },
  signOut() { tokenStore.set(''); tenantStore.set(''); adminStore.set(''); },
};

export function isDemo() { return node.mode === 'demo'; }

export function signedIn() { return Boolean(session.token) || isDemo(); }

export class APIError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function headers(extra) {
  const h = { Accept: 'application/json', ...extra };
  if (session.token) {
    h.Authorization = `Bearer ${session.token}`;
    if (session.tenant) h['X-Tenant-Id'] = session.tenant;
  } else if (isDemo()) {
    h['X-Tenant-Id'] = node.defaultTenant;
  }
  return h;
}

async function errorOf(resp) {
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  const e = body?.error || {};
  return new APIError(resp.status, e.code || `http_${resp.status}`, e.message || resp.statusText, e.details);
}

// api calls a JSON endpoint and returns the decoded body, or throws APIError.
export async function api(method, path, body, signal) {
  const init = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }), cache: 'no-store', signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  const resp = await fetch(path, init);
  if (!resp.ok) throw await errorOf(resp);
  return resp.json();
}

export const get = (path, signal) => api('GET', path, undefined, signal);

// query builds "?a=b&..." from the non-empty values of params.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const TERMINAL = new Set(['agentos.run.completed', 'agentos.run.failed', 'agentos.run.canceled']);

// parseFrame decodes one SSE frame (the lines between blank lines).
export function parseFrame(frame) {
  let id = '';
  let event = '';
  const data = [];
  for (const line of frame.split(/\r\n|\r|\n/)) {
    if (!line || line.startsWith(':')) continue;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? '' : line.slice(c + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
    else if (field === 'event') event = value;
  }
  if (!data.length) return null;
  return { id, event, data: JSON.parse(data.join('\n')) };
}

// streamEvents reads a run's event stream (replay, then live) and calls
// onEvent with each envelope until the run ends, reconnecting after the
// last sequence seen if the connection drops. EventSource cannot send an
// Authorization header, so this reads SSE frames from a fetch() body.
export async function streamEvents(runID, onEvent, signal) {
  let after = 0;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const resp = await fetch(`/v1/runs/${encodeURIComponent(runID)}/events?after_sequence=${after}`, {
        headers: headers({ Accept: 'text/event-stream' }), cache: 'no-store', signal,
      });
      if (!resp.ok) throw await errorOf(resp);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let m;
        while ((m = /\r\n\r\n|\n\n|\r\r/.exec(buf))) {
          const frame = parseFrame(buf.slice(0, m.index));
          buf = buf.slice(m.index + m[0].length);
          const ev = frame?.data?.event;
          if (!ev) continue;
          if (ev.sequence > after) {
            after = ev.sequence;
            onEvent(ev);
          }
          if (TERMINAL.has(ev.type)) return;
        }
      }
      failures = 0;
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof APIError && e.status < 500 && e.status !== 429) throw e;
      failures++;
    }
    await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** failures)));
  }
}
