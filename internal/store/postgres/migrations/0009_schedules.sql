-- Schedules (docs/operations.md "Schedules"): every replica scans the due
-- ones; a tick's run is created with an idempotency key naming the
-- schedule and the tick, so replicas firing the same tick create one run.
CREATE TABLE schedules (
    tenant_id      text        NOT NULL,
    schedule_id    text        NOT NULL,
    agent_id       text        NOT NULL,
    cron           text        NOT NULL DEFAULT '',
    every          text        NOT NULL DEFAULT '',
    timezone       text        NOT NULL,
    input          json        NOT NULL,
    thread_id      text        NOT NULL DEFAULT '',
    status         text        NOT NULL,
    misfire_policy text        NOT NULL,
    catch_up_max   integer     NOT NULL DEFAULT 0,
    principal_id   text        NOT NULL,
    scopes         jsonb       NOT NULL,
    roles          jsonb       NOT NULL,
    next_run_at    timestamptz,
    last_tick_at   timestamptz,
    last_run_id    text        NOT NULL DEFAULT '',
    last_error     text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id)
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE status = 'active';
