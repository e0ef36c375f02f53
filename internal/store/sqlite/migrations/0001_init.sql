-- 0001_init: the whole AgentOS schema. Times are INTEGER microseconds since
-- the Unix epoch (UTC); nested objects are JSON text. tenant_id leads every
-- primary key (CONTRACT §8); the few global tables say why.

CREATE TABLE tenants (
    tenant_id         TEXT    NOT NULL PRIMARY KEY,
    name              TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    plan_tier         TEXT    NOT NULL,
    created_at        INTEGER,
    updated_at        INTEGER,
    default_policy_id TEXT    NOT NULL,
    entitlements      TEXT    NOT NULL,
    quotas            TEXT    NOT NULL,
    metadata          TEXT    NOT NULL
);

CREATE TABLE tokens (
    tenant_id    TEXT NOT NULL,
    token_id     TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    roles        TEXT NOT NULL,
    created_at   INTEGER,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    PRIMARY KEY (tenant_id, token_id)
);
-- A request's tenant is found from its token, so the hash is unique across tenants.
CREATE UNIQUE INDEX tokens_secret_hash ON tokens (secret_hash);
CREATE UNIQUE INDEX tokens_token_id ON tokens (token_id);

CREATE TABLE agents (
    tenant_id    TEXT    NOT NULL,
    agent_id     TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    model_ref    TEXT    NOT NULL,
    instructions TEXT    NOT NULL,
    tools        TEXT    NOT NULL,
    defaults     TEXT    NOT NULL,
    created_at   INTEGER,
    updated_at   INTEGER,
    PRIMARY KEY (tenant_id, agent_id)
);

CREATE TABLE runs (
    tenant_id       TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    agent_id        TEXT    NOT NULL,
    principal_id    TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    created_at      INTEGER,
    started_at      INTEGER,
    completed_at    INTEGER,
    input           TEXT    NOT NULL,
    context         TEXT,
    tooling         TEXT    NOT NULL,
    run_options     TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    output          TEXT,
    error           TEXT,
    events_url      TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    traceparent     TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, run_id)
);
CREATE INDEX runs_tenant_created ON runs (tenant_id, created_at DESC, run_id DESC);
-- Recovery at startup scans unfinished runs of every tenant.
CREATE INDEX runs_status ON runs (status);

CREATE TABLE steps (
    tenant_id    TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    step_id      TEXT    NOT NULL,
    idx          INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    tool_call_id TEXT    NOT NULL,
    input        TEXT,
    output       TEXT,
    started_at   INTEGER,
    completed_at INTEGER,
    PRIMARY KEY (tenant_id, run_id, step_id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, run_id) ON DELETE CASCADE
);

CREATE TABLE events (
    tenant_id   TEXT    NOT NULL,
    run_id      TEXT    NOT NULL,
    sequence    INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    time        INTEGER,
    type        TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL,
    step_id     TEXT,
    traceparent TEXT    NOT NULL,
    span_id     TEXT    NOT NULL,
    payload     TEXT,
    PRIMARY KEY (tenant_id, run_id, sequence),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, run_id) ON DELETE CASCADE
);

CREATE TABLE idempotency_keys (
    tenant_id    TEXT    NOT NULL,
    principal_id TEXT    NOT NULL,
    agent_id     TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, principal_id, agent_id, idem_key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);

-- The run queue (internal/queue/sqlite). store.CreateRun inserts the entry in
-- the admission transaction; the queue adapter leases, renews and acks it.
CREATE TABLE queue_entries (
    tenant_id        TEXT    NOT NULL,
    run_id           TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    enqueued_at      INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, run_id)
);
CREATE INDEX queue_entries_order ON queue_entries (tenant_id, priority DESC, enqueued_at);

-- When each tenant was last given a lease (a counter, not a time), for
-- least-recently-served-first fairness.
CREATE TABLE queue_tenants (
    tenant_id   TEXT    NOT NULL PRIMARY KEY,
    last_served INTEGER NOT NULL
);

-- The audit chain is global (one sequence for the whole node), so seq is
-- unique on its own; tenant_id still leads the primary key.
CREATE TABLE audit_log (
    tenant_id      TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    audit_id       TEXT    NOT NULL,
    time           INTEGER NOT NULL,
    principal_id   TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    outcome        TEXT    NOT NULL,
    policy_context TEXT,
    details        TEXT,
    correlation_id TEXT    NOT NULL,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);

CREATE TABLE kv (
    tenant_id TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    kv_key    TEXT    NOT NULL,
    value     BLOB    NOT NULL,
    size      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, namespace, kv_key)
);

CREATE TABLE budget_reservations (
    tenant_id      TEXT    NOT NULL,
    reservation_id TEXT    NOT NULL,
    budget_window  TEXT    NOT NULL,
    window_start   INTEGER NOT NULL,
    tokens         INTEGER NOT NULL,
    cost_usd       REAL    NOT NULL,
    settled        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, reservation_id)
);
CREATE INDEX budget_reservations_window ON budget_reservations (tenant_id, budget_window, window_start);

CREATE TABLE usage_records (
    tenant_id     TEXT    NOT NULL,
    usage_id      TEXT    NOT NULL,
    principal_id  TEXT    NOT NULL,
    agent_id      TEXT    NOT NULL,
    run_id        TEXT    NOT NULL,
    model_id      TEXT    NOT NULL,
    backend       TEXT    NOT NULL,
    operation     TEXT    NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd      REAL    NOT NULL,
    time          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, usage_id)
);
CREATE INDEX usage_records_time ON usage_records (tenant_id, time);

CREATE TABLE forwards (
    tenant_id         TEXT NOT NULL,
    run_id            TEXT NOT NULL,
    peer_stack_id     TEXT NOT NULL,
    principal_id      TEXT NOT NULL,
    remote_events_url TEXT NOT NULL,
    created_at        INTEGER,
    PRIMARY KEY (tenant_id, run_id)
);

-- Token ids seen by federation (replay protection). A JWT id is not tenant
-- scoped: it identifies a token of a peer node.
CREATE TABLE used_jtis (
    jti        TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

CREATE TABLE ingested_events (
    tenant_id    TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    sequence     INTEGER NOT NULL,
    event        TEXT    NOT NULL,
    source_stack TEXT    NOT NULL,
    ingested_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX ingested_events_run ON ingested_events (tenant_id, run_id, sequence);
