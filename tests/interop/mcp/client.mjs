// The official MCP TypeScript SDK client against an AgentOS node's /mcp
// endpoint: MCP_URL (http://<orchestrator>/mcp), MCP_TOKEN (an AgentOS API
// token, sent as Authorization: Bearer) and MCP_AGENT (an agent id). Lists
// the tools, runs the agent through its run_agent_<id> tool with progress
// notifications, reads the run's resource, lists the resources and reads
// the thread MCP_THREAD's, and prints one JSON object with what it saw; any
// failure throws (exit 1). Run by tests/interop/mcp_test.go.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = new URL(process.env.MCP_URL);
const agent = process.env.MCP_AGENT;
const transport = new StreamableHTTPClientTransport(url, {
  requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_TOKEN}` } },
});
const client = new Client({ name: "agentos-interop-node", version: "1.0.0" });
await client.connect(transport);

const out = { server: client.getServerVersion() };
const { tools } = await client.listTools();
out.tools = tools.map((t) => ({ name: t.name, required: t.inputSchema.required ?? [] }));

const progress = [];
const result = await client.callTool(
  { name: `run_agent_${agent}`, arguments: { input: "hello from the node mcp client" } },
  undefined,
  { onprogress: (p) => progress.push(p.message), timeout: 120000 },
);
out.result = { isError: result.isError ?? false, text: result.content[0]?.text, structured: result.structuredContent };
out.progress = progress;

const runId = result.structuredContent?.run_id;
const read = await client.readResource({ uri: `agentos://runs/${runId}` });
out.resource = JSON.parse(read.contents[0].text);

const { resources } = await client.listResources();
out.listed = resources.map((r) => r.uri);
const thread = await client.readResource({ uri: `agentos://threads/${process.env.MCP_THREAD}` });
out.thread = JSON.parse(thread.contents[0].text);

await client.close();
console.log(JSON.stringify(out));
