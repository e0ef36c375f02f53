-- Threads (conversations): a run created on a thread sees its earlier
-- messages and appends its turn when it ends (internal/store/threads.go).
ALTER TABLE runs ADD COLUMN thread_id text NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN multitask_strategy text NOT NULL DEFAULT '';

-- active_run_id is the thread's one queued or running run ('' for none):
-- admission locks the row (FOR UPDATE) and decides the multitask strategy
-- against it, so at most one run of a thread is active across replicas.
CREATE TABLE threads (
    tenant_id     text        NOT NULL,
    thread_id     text        NOT NULL,
    metadata      jsonb       NOT NULL,
    active_run_id text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, thread_id)
);
CREATE INDEX threads_tenant_created ON threads (tenant_id, created_at DESC, thread_id DESC);

CREATE TABLE thread_messages (
    tenant_id    text        NOT NULL,
    thread_id    text        NOT NULL,
    seq          bigint      NOT NULL,
    message_id   text        NOT NULL,
    run_id       text        NOT NULL,
    role         text        NOT NULL,
    content      text        NOT NULL,
    tool_calls   json,
    tool_call_id text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, thread_id, seq)
);

-- Runs admitted with multitask_strategy=enqueue behind the active run:
-- they have no queue entry until the runs before them have ended.
CREATE TABLE thread_waiting (
    tenant_id   text        NOT NULL,
    thread_id   text        NOT NULL,
    run_id      text        NOT NULL,
    priority    integer     NOT NULL,
    enqueued_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, thread_id, run_id)
);
CREATE INDEX thread_waiting_order ON thread_waiting (tenant_id, thread_id, enqueued_at, run_id);
