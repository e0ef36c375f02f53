-- Tools a tenant registered (storage key tenant/{tenant_id}/tools/{tool_id}).
-- secret is the HMAC key shared with the tenant's webhook: the node signs
-- every call with it, so it is kept as given, like any credential the node
-- itself must use. input_schema is text, not jsonb, so it reads back verbatim.
CREATE TABLE tools (
    tenant_id    text    NOT NULL,
    tool_id      text    NOT NULL,
    name         text    NOT NULL,
    description  text    NOT NULL,
    input_schema text    NOT NULL,
    kind         text    NOT NULL,
    url          text    NOT NULL,
    secret       text    NOT NULL,
    idempotent   boolean NOT NULL,
    timeout_ms   integer NOT NULL,
    created_at   timestamptz,
    updated_at   timestamptz,
    PRIMARY KEY (tenant_id, tool_id)
);
