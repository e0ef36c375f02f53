-- Searchable memory (tool.memory.*, /v1/memory): one row per (tenant,
-- namespace, key). size counts against the tenant's max_memory_bytes
-- together with the kv table. embedding is little-endian float32s.
CREATE TABLE memory (
    tenant_id       TEXT    NOT NULL,
    namespace       TEXT    NOT NULL,
    mem_key         TEXT    NOT NULL,
    value           BLOB    NOT NULL,
    body            TEXT    NOT NULL,
    embedding       BLOB,
    embedding_model TEXT    NOT NULL DEFAULT '',
    size            INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, namespace, mem_key)
);

-- Keyword index: FTS5 with the Porter stemmer, kept in step with memory
-- by the adapter in the same transaction (rowid = memory's rowid).
CREATE VIRTUAL TABLE memory_fts USING fts5(body, tokenize = 'porter unicode61');
