// An A2A server built with the official A2A JS SDK (@a2a-js/sdk, protocol
// 0.3, JSON-RPC over express): its one agent answers every message with a
// completed task whose artifact says "remote agent got: <text>". Listens
// on 127.0.0.1 at a free port and prints "LISTENING <port>".
import { randomUUID } from 'node:crypto';
import express from 'express';
import { AGENT_CARD_PATH } from '@a2a-js/sdk';
import { DefaultRequestHandler, InMemoryTaskStore } from '@a2a-js/sdk/server';
import { agentCardHandler, jsonRpcHandler, UserBuilder } from '@a2a-js/sdk/server/express';

const card = {
  name: 'JS echo agent', description: 'Answers with what it got.', protocolVersion: '0.3.0', version: '1.0.0',
  url: '', preferredTransport: 'JSONRPC',
  skills: [{ id: 'echo', name: 'Echo', description: 'Echoes the message', tags: ['echo'] }],
  capabilities: { streaming: true, pushNotifications: false },
  defaultInputModes: ['text'], defaultOutputModes: ['text'],
};

class EchoExecutor {
  async execute(ctx, bus) {
    const { taskId, contextId, userMessage, task } = ctx;
    if (!task) {
      bus.publish({ kind: 'task', id: taskId, contextId, status: { state: 'submitted', timestamp: new Date().toISOString() }, history: [userMessage] });
    }
    const got = userMessage.parts.filter((p) => p.kind === 'text').map((p) => p.text).join('\n');
    bus.publish({ kind: 'status-update', taskId, contextId, status: { state: 'working', timestamp: new Date().toISOString() }, final: false });
    bus.publish({ kind: 'artifact-update', taskId, contextId,
      artifact: { artifactId: randomUUID(), name: 'answer', parts: [{ kind: 'text', text: `remote agent got: ${got}` }] } });
    bus.publish({ kind: 'status-update', taskId, contextId, status: { state: 'completed', timestamp: new Date().toISOString() }, final: true });
    bus.finished();
  }
  cancelTask = async () => {};
}

const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), new EchoExecutor());
const app = express();
app.use(`/${AGENT_CARD_PATH}`, agentCardHandler({ agentCardProvider: handler }));
app.use('/a2a/jsonrpc', jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }));
const server = app.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  card.url = `http://127.0.0.1:${port}/a2a/jsonrpc`;
  console.log(`LISTENING ${port}`);
});
process.stdin.on('end', () => server.close(() => process.exit(0)));
process.stdin.resume();
