// The official A2A JS SDK client (@a2a-js/sdk, protocol 0.3) against an
// AgentOS agent. Env: A2A_AGENT_URL (the agent's base URL, whose
// /.well-known/agent-card.json is its card), A2A_TOKEN (a bearer token).
// Prints one JSON object with what it saw (tests/interop/a2a_test.go
// checks it).
import { randomUUID } from 'node:crypto';
import { ClientFactory } from '@a2a-js/sdk/client';

const base = process.env.A2A_AGENT_URL;
const token = process.env.A2A_TOKEN;
// The card declares bearer auth: every request, the card's included,
// carries the token.
const plainFetch = globalThis.fetch;
globalThis.fetch = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  headers.set('Authorization', `Bearer ${token}`);
  return plainFetch(input, { ...init, headers });
};

const message = (text, contextId) => ({
  kind: 'message', messageId: randomUUID(), role: 'user', contextId,
  parts: [{ kind: 'text', text }],
});
const text = (parts) => (parts || []).filter((p) => p.kind === 'text').map((p) => p.text).join('\n');

// The card sits under the agent's path, not at the host's root: give its
// full URL (an empty path).
const client = await new ClientFactory().createFromUrl(`${base}/.well-known/agent-card.json`, '');
const card = await client.getAgentCard();

// message/send: blocks until the task is done.
const task = await client.sendMessage({ message: message('hello from the a2a-js client') });

// message/stream: the task, then its status updates, artifact and final status.
const events = [];
for await (const ev of client.sendMessageStream({ message: message('streamed from the a2a-js client', task.contextId) })) {
  events.push(ev);
}
const streamedTaskId = events[0]?.id;
const fetched = await client.getTask({ id: streamedTaskId });

// tasks/get of an unknown task is a TaskNotFound error.
let notFound = '';
try {
  await client.getTask({ id: 'run_does_not_exist' });
} catch (e) {
  notFound = e.constructor.name;
}

// tasks/cancel of a finished task is TaskNotCancelable.
let notCancelable = '';
try {
  await client.cancelTask({ id: task.id });
} catch (e) {
  notCancelable = e.constructor.name;
}

console.log(JSON.stringify({
  card: { name: card.name, url: card.url, streaming: card.capabilities?.streaming, schemes: Object.keys(card.securitySchemes || {}) },
  send: { kind: task.kind, id: task.id, contextId: task.contextId, state: task.status?.state,
    artifact: text(task.artifacts?.[0]?.parts) },
  stream: { kinds: events.map((e) => e.kind), states: events.map((e) => e.status?.state).filter(Boolean),
    final: events.at(-1)?.final === true, artifact: text(events.find((e) => e.kind === 'artifact-update')?.artifact?.parts),
    contextId: events[0]?.contextId },
  get: { id: fetched.id, state: fetched.status?.state },
  notFound,
  notCancelable,
}));
