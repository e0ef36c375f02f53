-- Human approval of tool calls (store/approvals.go). A row is written with
-- the run change that stops the run in requires_action and replaced by the
-- one that resumes it; the orchestrator's sweep finds pending rows past
-- their deadline (approvals_due) and rejects them. The JSON columns are
-- text so that arguments read back verbatim.
CREATE TABLE approvals (
    tenant_id         text        NOT NULL,
    run_id            text        NOT NULL,
    tool_call_id      text        NOT NULL,
    step_id           text        NOT NULL,
    tool_id           text        NOT NULL,
    arguments         text,
    status            text        NOT NULL,
    created_at        timestamptz NOT NULL,
    deadline          timestamptz NOT NULL,
    decided_by        text        NOT NULL DEFAULT '',
    decided_at        timestamptz,
    decided_arguments text,
    PRIMARY KEY (tenant_id, run_id, tool_call_id)
);
CREATE INDEX approvals_due ON approvals (deadline) WHERE status = 'pending';

-- A tenant's tool definition may require approval of every call.
ALTER TABLE tools ADD COLUMN requires_approval boolean NOT NULL DEFAULT false;
