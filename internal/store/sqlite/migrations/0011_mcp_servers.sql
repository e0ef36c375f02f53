-- MCP servers a tenant registered (storage key
-- tenant/{tenant_id}/mcp-servers/{name}). headers, secret and env are
-- credentials the node itself sends or passes on, kept as given like a
-- webhook tool's secret; headers, args and env are JSON text.
CREATE TABLE mcp_servers (
    tenant_id  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    transport  TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    headers    TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    command    TEXT    NOT NULL,
    args       TEXT    NOT NULL,
    env        TEXT    NOT NULL,
    timeout_ms INTEGER NOT NULL,
    created_at INTEGER,
    updated_at INTEGER,
    PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;
