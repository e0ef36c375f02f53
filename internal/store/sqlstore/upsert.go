package sqlstore

// The conflict clauses of the adapters' upserts: SQL that PostgreSQL and
// SQLite read alike, so it is written once. Each replaces every column but
// the key and created_at.
const (
	// AgentUpsert replaces an agent by (tenant_id, agent_id).
	AgentUpsert = `ON CONFLICT (tenant_id, agent_id) DO UPDATE SET name = excluded.name,
	description = excluded.description, version = excluded.version, status = excluded.status,
	model_ref = excluded.model_ref, instructions = excluded.instructions, tools = excluded.tools,
	defaults = excluded.defaults, updated_at = excluded.updated_at`

	// ToolUpsert replaces a tool definition by (tenant_id, tool_id).
	ToolUpsert = `ON CONFLICT (tenant_id, tool_id) DO UPDATE SET name = excluded.name,
	description = excluded.description, input_schema = excluded.input_schema, kind = excluded.kind,
	url = excluded.url, secret = excluded.secret, idempotent = excluded.idempotent,
	timeout_ms = excluded.timeout_ms, requires_approval = excluded.requires_approval, updated_at = excluded.updated_at`

	// ApprovalUpsert replaces an approval by (tenant_id, run_id, tool_call_id).
	ApprovalUpsert = `ON CONFLICT (tenant_id, run_id, tool_call_id) DO UPDATE SET step_id = excluded.step_id,
	tool_id = excluded.tool_id, arguments = excluded.arguments, status = excluded.status,
	deadline = excluded.deadline, decided_by = excluded.decided_by, decided_at = excluded.decided_at,
	decided_arguments = excluded.decided_arguments`

	// MCPServerUpsert replaces an MCP server by (tenant_id, name).
	MCPServerUpsert = `ON CONFLICT (tenant_id, name) DO UPDATE SET transport = excluded.transport,
	url = excluded.url, headers = excluded.headers, secret = excluded.secret, command = excluded.command,
	args = excluded.args, env = excluded.env, timeout_ms = excluded.timeout_ms, updated_at = excluded.updated_at`

	// StepUpsert replaces a step by (tenant_id, run_id, step_id).
	StepUpsert = `ON CONFLICT (tenant_id, run_id, step_id) DO UPDATE SET idx = excluded.idx, kind = excluded.kind,
	name = excluded.name, status = excluded.status, tool_call_id = excluded.tool_call_id, input = excluded.input,
	output = excluded.output, started_at = excluded.started_at, completed_at = excluded.completed_at`
)
