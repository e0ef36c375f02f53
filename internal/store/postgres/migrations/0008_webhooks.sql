-- Webhooks (docs/operations.md "Webhooks"). A run's targets are copied
-- onto the run when it is created; every event appended to the run later
-- adds one row per target that wants it to webhook_deliveries, in the
-- event's own transaction, so a crash loses no delivery (the outbox).
CREATE TABLE run_webhooks (
    tenant_id   text    NOT NULL,
    run_id      text    NOT NULL,
    target_no   integer NOT NULL,
    url         text    NOT NULL,
    events      text    NOT NULL,
    endpoint_id text    NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, run_id, target_no)
);

CREATE TABLE webhook_deliveries (
    tenant_id       text        NOT NULL,
    delivery_id     text        NOT NULL,
    run_id          text        NOT NULL,
    sequence        bigint      NOT NULL,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    url             text        NOT NULL,
    endpoint_id     text        NOT NULL DEFAULT '',
    status          text        NOT NULL,
    attempts        jsonb       NOT NULL DEFAULT '[]',
    next_attempt_at timestamptz,
    lease_owner     text        NOT NULL DEFAULT '',
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL,
    completed_at    timestamptz,
    PRIMARY KEY (tenant_id, delivery_id)
);
CREATE INDEX webhook_deliveries_run ON webhook_deliveries (tenant_id, run_id, sequence);
-- The dispatchers' scan (FOR UPDATE SKIP LOCKED): pending by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_endpoints (
    tenant_id   text        NOT NULL,
    endpoint_id text        NOT NULL,
    url         text        NOT NULL,
    events      text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, endpoint_id)
);

-- One signing secret per tenant; during a rotation the previous one signs
-- too, until previous_until.
CREATE TABLE webhook_secrets (
    tenant_id      text        NOT NULL PRIMARY KEY,
    secret         text        NOT NULL,
    previous       text        NOT NULL DEFAULT '',
    previous_until timestamptz,
    created_at     timestamptz NOT NULL
);
