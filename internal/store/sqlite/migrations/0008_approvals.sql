-- Human approval of tool calls (store/approvals.go). A row is written with
-- the run change that stops the run in requires_action and replaced by the
-- one that resumes it; the orchestrator's sweep finds pending rows past
-- their deadline (approvals_due) and rejects them.
CREATE TABLE approvals (
    tenant_id         TEXT    NOT NULL,
    run_id            TEXT    NOT NULL,
    tool_call_id      TEXT    NOT NULL,
    step_id           TEXT    NOT NULL,
    tool_id           TEXT    NOT NULL,
    arguments         TEXT,
    status            TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    deadline          INTEGER NOT NULL,
    decided_by        TEXT    NOT NULL DEFAULT '',
    decided_at        INTEGER,
    decided_arguments TEXT,
    PRIMARY KEY (tenant_id, run_id, tool_call_id)
) WITHOUT ROWID;
CREATE INDEX approvals_due ON approvals (deadline) WHERE status = 'pending';

-- A tenant's tool definition may require approval of every call.
ALTER TABLE tools ADD COLUMN requires_approval INTEGER NOT NULL DEFAULT 0;
