-- Artifacts (files tools and workers produce; bytes in the blob store
-- under tenant/{tenant_id}/artifacts/{artifact_id}). size counts against
-- the tenant's quotas.storage.max_artifact_bytes; expires_at (NULL: never)
-- drives the retention sweeper.
CREATE TABLE artifacts (
    tenant_id    text        NOT NULL,
    artifact_id  text        NOT NULL,
    run_id       text        NOT NULL,
    step_id      text        NOT NULL DEFAULT '',
    tool_call_id text        NOT NULL DEFAULT '',
    name         text        NOT NULL,
    content_type text        NOT NULL,
    size         bigint      NOT NULL,
    sha256       text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    PRIMARY KEY (tenant_id, artifact_id)
);

CREATE INDEX artifacts_run ON artifacts (tenant_id, run_id, created_at);
CREATE INDEX artifacts_expiry ON artifacts (expires_at) WHERE expires_at IS NOT NULL;
