-- Artifacts (files tools and workers produce; bytes in the blob store
-- under tenant/{tenant_id}/artifacts/{artifact_id}). size counts against
-- the tenant's quotas.storage.max_artifact_bytes; expires_at (NULL: never)
-- drives the retention sweeper. Times are Unix microseconds.
CREATE TABLE artifacts (
    tenant_id    TEXT    NOT NULL,
    artifact_id  TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    step_id      TEXT    NOT NULL DEFAULT '',
    tool_call_id TEXT    NOT NULL DEFAULT '',
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    PRIMARY KEY (tenant_id, artifact_id)
);

CREATE INDEX artifacts_run ON artifacts (tenant_id, run_id, created_at);
CREATE INDEX artifacts_expiry ON artifacts (expires_at) WHERE expires_at IS NOT NULL;
