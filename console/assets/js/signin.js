import { h, append } from './dom.js';
import { api, session, node, isDemo, APIError } from './api.js';
import { navigate, setTitle } from './app.js';

// signIn checks a token against the API and keeps it for this tab. A
// platform admin's token lists the tenants it may act for; it starts on
// the demo tenant when there is one, else the first.
async function signIn(token) {
  session.signOut();
  session.token = token;
  try {
    const { tenants } = await api('GET', '/v1/admin/tenants');
    const ids = tenants.map((t) => t.tenant_id);
    session.tenants = ids;
    session.tenant = ids.includes(node.defaultTenant) ? node.defaultTenant : ids[0] || '';
    return;
  } catch (err) {
    if (!(err instanceof APIError) || err.status !== 403) {
      session.signOut();
      throw err;
    }
  }
  try {
    await api('GET', '/v1/runs?limit=1'); // a tenant user's token
  } catch (err) {
    session.signOut();
    throw err;
  }
}

export async function signinPage(main) {
  setTitle('Sign in');
  const next = new URLSearchParams(location.search).get('next');
  const status = h('p', { id: 'signin-status', role: 'status', 'aria-live': 'polite' });
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const form = h('form', { class: 'signin', onsubmit: async (e) => {
    e.preventDefault();
    status.textContent = 'Checking the token…';
    try {
      await signIn(input.value.trim());
      navigate(next && next.startsWith('/console/') ? next : '/console/runs', true);
    } catch (err) {
      status.textContent = err instanceof APIError && err.status === 401
        ? 'The API refused this token.' : `Sign-in failed: ${err.message}`;
      status.className = 'error';
    }
  } },
  h('label', { for: 'token' }, 'API token'), input,
  h('button', { type: 'submit' }, 'Sign in'));
  append(main, h('h1', {}, 'Sign in'),
    h('p', {}, 'Paste an API token issued by the admin API (agentos tokens issue). It is kept in this tab only (session storage) and sent to the API as a bearer token.'),
    form, status,
    isDemo() ? h('p', {}, 'This node runs in demo mode: ', h('a', { href: '/console/runs' }, `open the demo tenant ${node.defaultTenant} without a token`), '.') : null);
}
