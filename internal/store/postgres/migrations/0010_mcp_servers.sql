-- MCP servers a tenant registered (storage key
-- tenant/{tenant_id}/mcp-servers/{name}). headers, secret and env are
-- credentials the node itself sends or passes on, kept as given like a
-- webhook tool's secret; headers, args and env are JSON text.
CREATE TABLE mcp_servers (
    tenant_id  text    NOT NULL,
    name       text    NOT NULL,
    transport  text    NOT NULL,
    url        text    NOT NULL,
    headers    text    NOT NULL,
    secret     text    NOT NULL,
    command    text    NOT NULL,
    args       text    NOT NULL,
    env        text    NOT NULL,
    timeout_ms integer NOT NULL,
    created_at timestamptz,
    updated_at timestamptz,
    PRIMARY KEY (tenant_id, name)
);
