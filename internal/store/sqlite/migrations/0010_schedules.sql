-- Schedules (docs/operations.md "Schedules"): every replica scans the due
-- ones; a tick's run is created with an idempotency key naming the
-- schedule and the tick, so replicas firing the same tick create one run.
CREATE TABLE schedules (
    tenant_id      TEXT    NOT NULL,
    schedule_id    TEXT    NOT NULL,
    agent_id       TEXT    NOT NULL,
    cron           TEXT    NOT NULL DEFAULT '',
    every          TEXT    NOT NULL DEFAULT '',
    timezone       TEXT    NOT NULL,
    input          TEXT    NOT NULL,
    thread_id      TEXT    NOT NULL DEFAULT '',
    status         TEXT    NOT NULL,
    misfire_policy TEXT    NOT NULL,
    catch_up_max   INTEGER NOT NULL DEFAULT 0,
    principal_id   TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    roles          TEXT    NOT NULL,
    next_run_at    INTEGER,
    last_tick_at   INTEGER,
    last_run_id    TEXT    NOT NULL DEFAULT '',
    last_error     TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id)
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE status = 'active';
