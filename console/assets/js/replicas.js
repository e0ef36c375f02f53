import { h, fmtNumber } from './dom.js';
import { setTitle } from './app.js';

// replicasPage shows the readiness of what served the console: through
// the gateway, each pool's healthy replicas; on an orchestrator, its own
// dependency checks. /readyz answers 503 with the same details when
// something is down, so both answers are shown.
export async function replicasPage(main, _params, signal) {
  setTitle('Replicas');
  const resp = await fetch('/readyz', { headers: { Accept: 'application/json' }, cache: 'no-store', signal });
  const body = await resp.json();
  const details = resp.ok ? body : (body.error?.details || {});
  main.append(h('h1', {}, 'Replicas'),
    h('p', { id: 'ready-status', class: resp.ok ? 'ok' : 'error' }, resp.ok ? 'Ready.' : `Not ready: ${body.error?.message || resp.status}`));
  if (details.pools) {
    main.append(h('table', {}, h('caption', {}, 'Gateway pools'),
      h('thead', {}, h('tr', {}, ['Pool', 'Healthy replicas', 'Replicas'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, Object.entries(details.pools).sort().map(([name, p]) => h('tr', { 'data-pool': name },
        h('th', { scope: 'row' }, name), h('td', {}, fmtNumber(p.healthy)), h('td', {}, fmtNumber(p.total)))))));
  }
  if (details.checks) {
    main.append(h('table', {}, h('caption', {}, 'Dependency checks of this orchestrator'),
      h('thead', {}, h('tr', {}, ['Dependency', 'State'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, Object.entries(details.checks).sort().map(([name, state]) => h('tr', {},
        h('th', { scope: 'row' }, name), h('td', {}, state))))));
  }
}
