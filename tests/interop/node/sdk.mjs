// The official OpenAI Node SDK, used unchanged against AgentOS model-policy:
// OPENAI_BASE_URL (http://<model-policy>/openai/v1) and OPENAI_API_KEY (an
// AgentOS API token from `agentos tokens issue`) are the SDK's own
// environment variables. Prints one JSON object with what it saw; any
// unexpected answer throws (exit 1). Run by tests/interop/node_test.go.
import OpenAI from "openai";

const client = new OpenAI({ maxRetries: 0 });
const out = {};

const models = [];
for await (const m of client.models.list()) models.push(m);
out.models = models.map((m) => ({ id: m.id, object: m.object, owned_by: m.owned_by, created: m.created }));

const chatModel = models.find((m) => m.id.endsWith("echo-fast"));
if (!chatModel) throw new Error("no echo-fast model listed: " + JSON.stringify(out.models));
const got = await client.models.retrieve(chatModel.id);
out.retrieved = { id: got.id, object: got.object };

const chat = await client.chat.completions.create({
  model: "tier:fast",
  messages: [{ role: "user", content: "hello from node" }],
});
out.chat = { object: chat.object, content: chat.choices[0].message.content, finish_reason: chat.choices[0].finish_reason };

const stream = await client.chat.completions.create({
  model: "tier:fast",
  messages: [{ role: "user", content: "stream from node" }],
  stream: true,
});
let streamed = "";
let chunks = 0;
for await (const chunk of stream) {
  chunks++;
  streamed += chunk.choices[0]?.delta?.content ?? "";
}
out.stream = { chunks, content: streamed };

const emb = await client.embeddings.create({ model: "tier:embed", input: ["one", "two"] });
out.embeddings = { count: emb.data.length, dims: emb.data[0].embedding.length };

// Errors: SDK error classes with OpenAI's type and param.
async function apiError(fn) {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof OpenAI.APIError)) throw e;
    return { class: e.constructor.name, status: e.status, type: e.type, param: e.param, code: e.code };
  }
  throw new Error("expected an API error");
}
out.notFound = await apiError(() => client.models.retrieve("builtin/no-such-model"));
out.tooManyTokens = await apiError(() =>
  client.chat.completions.create({ model: "tier:fast", messages: [{ role: "user", content: "hi" }], max_tokens: 100000 }),
);

console.log(JSON.stringify(out));
