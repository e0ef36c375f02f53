-- Tools a tenant registered (storage key tenant/{tenant_id}/tools/{tool_id}).
-- secret is the HMAC key shared with the tenant's webhook: the node signs
-- every call with it, so it is kept as given, like any credential the node
-- itself must use.
CREATE TABLE tools (
    tenant_id    TEXT    NOT NULL,
    tool_id      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    input_schema TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    url          TEXT    NOT NULL,
    secret       TEXT    NOT NULL,
    idempotent   INTEGER NOT NULL,
    timeout_ms   INTEGER NOT NULL,
    created_at   INTEGER,
    updated_at   INTEGER,
    PRIMARY KEY (tenant_id, tool_id)
) WITHOUT ROWID;
