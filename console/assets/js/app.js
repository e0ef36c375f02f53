// The console's shell: client-side routes with real URLs, the header's
// navigation and session box, and error display. Each page module exports
// a function (main, params, signal) that renders into main and stops its
// timers and streams when signal aborts (the visitor left the page).

import { h, clear } from './dom.js';
import { node, session, signedIn, isDemo, APIError } from './api.js';
import { runsPage } from './runs.js';
import { runPage } from './run.js';
import { threadsPage, threadPage } from './threads.js';
import { usagePage } from './usage.js';
import { budgetsPage } from './budgets.js';
import { auditPage } from './audit.js';
import { replicasPage } from './replicas.js';
import { signinPage } from './signin.js';

const NAV = [
  ['/console/runs', 'Runs'],
  ['/console/threads', 'Threads'],
  ['/console/usage', 'Usage'],
  ['/console/budgets', 'Budgets'],
  ['/console/audit', 'Audit'],
  ['/console/replicas', 'Replicas'],
];

const ROUTES = [
  [/^\/console\/runs$/, runsPage],
  [/^\/console\/runs\/([^/]+)$/, runPage],
  [/^\/console\/threads$/, threadsPage],
  [/^\/console\/threads\/([^/]+)$/, threadPage],
  [/^\/console\/usage$/, usagePage],
  [/^\/console\/budgets$/, budgetsPage],
  [/^\/console\/audit$/, auditPage],
  [/^\/console\/replicas$/, replicasPage],
  [/^\/console\/signin$/, signinPage],
];

let leave = new AbortController();

export function navigate(path, replace = false) {
  history[replace ? 'replaceState' : 'pushState'](null, '', path);
  render();
}

function renderNav(path) {
  const nav = clear(document.getElementById('nav'));
  const list = h('ul');
  for (const [href, label] of NAV) {
    const here = path === href || path.startsWith(`${href}/`);
    list.append(h('li', {}, h('a', { href, 'aria-current': here ? 'page' : null }, label)));
  }
  nav.append(list);
}

function renderSession() {
  const box = clear(document.getElementById('session'));
  if (!session.token) {
    if (isDemo()) {
      box.append(h('span', { class: 'tenant' }, `Demo tenant ${node.defaultTenant}`), ' ',
        h('a', { href: '/console/signin' }, 'Sign in with a token'));
    }
    return;
  }
  const tenants = session.tenants;
  if (tenants.length > 1) {
    const select = h('select', { id: 'tenant-switch', onchange: (e) => { session.tenant = e.target.value; render(); } },
      tenants.map((t) => h('option', { value: t, selected: t === session.tenant }, t)));
    box.append(h('label', { for: 'tenant-switch' }, 'Tenant '), select);
  } else if (session.tenant) {
    box.append(h('span', { class: 'tenant' }, `Tenant ${session.tenant}`));
  }
  box.append(' ', h('button', { type: 'button', id: 'signout', onclick: () => { session.signOut(); navigate('/console/signin'); } }, 'Sign out'));
}

// showError renders an API error in place of the page.
export function showError(main, err) {
  clear(main);
  if (err instanceof APIError && err.status === 401) {
    main.append(h('h1', {}, 'Signed out'), h('p', {}, 'The API refused the credentials: ', err.message, '. '),
      h('p', {}, h('a', { href: '/console/signin' }, 'Sign in again')));
    return;
  }
  if (err instanceof APIError && err.status === 403) {
    main.append(h('h1', {}, 'Not allowed'), h('p', { class: 'error', role: 'alert' }, err.message));
    return;
  }
  main.append(h('h1', {}, 'Something went wrong'),
    h('p', { class: 'error', role: 'alert' }, err instanceof APIError ? `${err.code}: ${err.message}` : String(err)));
}

async function render() {
  leave.abort();
  leave = new AbortController();
  const { signal } = leave;
  let path = location.pathname.replace(/\/+$/, '');
  if (path === '/console' || path === '') {
    history.replaceState(null, '', '/console/runs');
    path = '/console/runs';
  }
  if (!signedIn() && path !== '/console/signin') {
    history.replaceState(null, '', `/console/signin?next=${encodeURIComponent(location.pathname + location.search)}`);
    path = '/console/signin';
  }
  renderNav(path);
  renderSession();
  const main = clear(document.getElementById('main'));
  const route = ROUTES.find(([re]) => re.test(path));
  if (!route) {
    document.title = 'Not found · AgentOS console';
    main.append(h('h1', {}, 'Page not found'), h('p', {}, 'No console page at this address. '),
      h('p', {}, h('a', { href: '/console/runs' }, 'Go to runs')));
    return;
  }
  const params = route[0].exec(path).slice(1).map(decodeURIComponent);
  try {
    await route[1](main, params, signal);
  } catch (err) {
    if (!signal.aborted) showError(main, err);
  }
}

// setTitle names the page for the tab and for screen readers.
export function setTitle(title) {
  document.title = `${title} · AgentOS console`;
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || a.target || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/console/') || url.pathname.startsWith('/console/assets/')) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
  document.getElementById('main').focus();
});
window.addEventListener('popstate', render);
render();
