-- Threads (conversations): a run created on a thread sees its earlier
-- messages and appends its turn when it ends (internal/store/threads.go).
ALTER TABLE runs ADD COLUMN thread_id TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN multitask_strategy TEXT NOT NULL DEFAULT '';

-- active_run_id is the thread's one queued or running run ('' for none):
-- admission decides the multitask strategy against it under the write
-- lock, so at most one run of a thread is active.
CREATE TABLE threads (
    tenant_id     TEXT    NOT NULL,
    thread_id     TEXT    NOT NULL,
    metadata      TEXT    NOT NULL,
    active_run_id TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, thread_id)
);
CREATE INDEX threads_tenant_created ON threads (tenant_id, created_at DESC, thread_id DESC);

CREATE TABLE thread_messages (
    tenant_id    TEXT    NOT NULL,
    thread_id    TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    message_id   TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    content      TEXT    NOT NULL,
    tool_calls   TEXT,
    tool_call_id TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, thread_id, seq)
);

-- Runs admitted with multitask_strategy=enqueue behind the active run:
-- they have no queue entry until the runs before them have ended.
CREATE TABLE thread_waiting (
    tenant_id   TEXT    NOT NULL,
    thread_id   TEXT    NOT NULL,
    run_id      TEXT    NOT NULL,
    priority    INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, thread_id, run_id)
);
CREATE INDEX thread_waiting_order ON thread_waiting (tenant_id, thread_id, enqueued_at, run_id);
