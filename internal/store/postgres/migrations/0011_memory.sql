-- Searchable memory (tool.memory.*, /v1/memory): one row per (tenant,
-- namespace, key). size counts against the tenant's max_memory_bytes
-- (kv_usage.bytes covers kv and memory). embedding is little-endian
-- float32s, compared by an exact cosine scan.
CREATE TABLE memory (
    tenant_id       text        NOT NULL,
    namespace       text        NOT NULL,
    mem_key         text        NOT NULL,
    value           bytea       NOT NULL,
    body            text        NOT NULL,
    tsv             tsvector    GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
    embedding       bytea,
    embedding_model text        NOT NULL DEFAULT '',
    size            bigint      NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, namespace, mem_key)
);

CREATE INDEX memory_tsv ON memory USING gin (tsv);
