-- Webhooks (docs/operations.md "Webhooks"). A run's targets are copied
-- onto the run when it is created; every event appended to the run later
-- adds one row per target that wants it to webhook_deliveries, in the
-- event's own transaction, so a crash loses no delivery (the outbox).
CREATE TABLE run_webhooks (
    tenant_id   TEXT    NOT NULL,
    run_id      TEXT    NOT NULL,
    target_no   INTEGER NOT NULL,
    url         TEXT    NOT NULL,
    events      TEXT    NOT NULL,
    endpoint_id TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, run_id, target_no)
);

CREATE TABLE webhook_deliveries (
    tenant_id       TEXT    NOT NULL,
    delivery_id     TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    endpoint_id     TEXT    NOT NULL DEFAULT '',
    status          TEXT    NOT NULL,
    attempts        TEXT    NOT NULL DEFAULT '[]',
    next_attempt_at INTEGER,
    lease_owner     TEXT    NOT NULL DEFAULT '',
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    completed_at    INTEGER,
    PRIMARY KEY (tenant_id, delivery_id)
);
CREATE INDEX webhook_deliveries_run ON webhook_deliveries (tenant_id, run_id, sequence);
-- The dispatchers' scan: pending deliveries by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_endpoints (
    tenant_id   TEXT    NOT NULL,
    endpoint_id TEXT    NOT NULL,
    url         TEXT    NOT NULL,
    events      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, endpoint_id)
);

-- One signing secret per tenant; during a rotation the previous one signs
-- too, until previous_until.
CREATE TABLE webhook_secrets (
    tenant_id      TEXT    NOT NULL PRIMARY KEY,
    secret         TEXT    NOT NULL,
    previous       TEXT    NOT NULL DEFAULT '',
    previous_until INTEGER,
    created_at     INTEGER NOT NULL
);
