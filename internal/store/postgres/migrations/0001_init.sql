-- 0001_init: the whole AgentOS schema for PostgreSQL. Times are timestamptz
-- (microsecond precision, UTC on the way out); structured objects the store
-- decodes are jsonb; JSON that must come back byte for byte (run context,
-- event payloads, step input/output, audit maps, replicated events) is json,
-- which keeps its text verbatim. tenant_id leads every primary key (CONTRACT
-- §8); the few global tables say why.

CREATE TABLE tenants (
    tenant_id         text  NOT NULL PRIMARY KEY,
    name              text  NOT NULL,
    status            text  NOT NULL,
    plan_tier         text  NOT NULL,
    created_at        timestamptz,
    updated_at        timestamptz,
    default_policy_id text  NOT NULL,
    entitlements      jsonb NOT NULL,
    quotas            jsonb NOT NULL,
    metadata          jsonb NOT NULL
);

CREATE TABLE tokens (
    tenant_id    text  NOT NULL,
    token_id     text  NOT NULL,
    principal_id text  NOT NULL,
    secret_hash  text  NOT NULL,
    scopes       jsonb NOT NULL,
    roles        jsonb NOT NULL,
    created_at   timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    PRIMARY KEY (tenant_id, token_id)
);
-- A request's tenant is found from its token, so the hash is unique across tenants.
CREATE UNIQUE INDEX tokens_secret_hash ON tokens (secret_hash);
CREATE UNIQUE INDEX tokens_token_id ON tokens (token_id);

CREATE TABLE agents (
    tenant_id    text    NOT NULL,
    agent_id     text    NOT NULL,
    name         text    NOT NULL,
    description  text    NOT NULL,
    version      integer NOT NULL,
    status       text    NOT NULL,
    model_ref    text    NOT NULL,
    instructions text    NOT NULL,
    tools        jsonb   NOT NULL,
    defaults     jsonb   NOT NULL,
    created_at   timestamptz,
    updated_at   timestamptz,
    PRIMARY KEY (tenant_id, agent_id)
);

-- last_sequence is the sequence of the run's newest event: appending locks
-- the run row (FOR UPDATE) and advances it, so sequences are gapless per run
-- however many replicas append at once.
CREATE TABLE runs (
    tenant_id       text        NOT NULL,
    run_id          text        NOT NULL,
    agent_id        text        NOT NULL,
    principal_id    text        NOT NULL,
    status          text        NOT NULL,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    completed_at    timestamptz,
    input           jsonb       NOT NULL,
    context         json,
    tooling         jsonb       NOT NULL,
    run_options     jsonb       NOT NULL,
    summary         jsonb       NOT NULL,
    output          jsonb,
    error           jsonb,
    events_url      text        NOT NULL,
    correlation_id  text        NOT NULL,
    traceparent     text        NOT NULL,
    idempotency_key text        NOT NULL,
    attempt         integer     NOT NULL,
    last_sequence   bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, run_id)
);
CREATE INDEX runs_tenant_created ON runs (tenant_id, created_at DESC, run_id DESC);
-- Recovery at startup scans unfinished runs of every tenant.
CREATE INDEX runs_unfinished ON runs (created_at) WHERE status IN ('queued', 'running');

CREATE TABLE steps (
    tenant_id    text    NOT NULL,
    run_id       text    NOT NULL,
    step_id      text    NOT NULL,
    idx          integer NOT NULL,
    kind         text    NOT NULL,
    name         text    NOT NULL,
    status       text    NOT NULL,
    tool_call_id text    NOT NULL,
    input        json,
    output       json,
    started_at   timestamptz,
    completed_at timestamptz,
    PRIMARY KEY (tenant_id, run_id, step_id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, run_id) ON DELETE CASCADE
);

CREATE TABLE events (
    tenant_id   text   NOT NULL,
    run_id      text   NOT NULL,
    sequence    bigint NOT NULL,
    event_id    text   NOT NULL,
    time        timestamptz,
    type        text   NOT NULL,
    agent_id    text   NOT NULL,
    step_id     text,
    traceparent text   NOT NULL,
    span_id     text   NOT NULL,
    payload     json,
    PRIMARY KEY (tenant_id, run_id, sequence),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, run_id) ON DELETE CASCADE
);

CREATE TABLE idempotency_keys (
    tenant_id    text        NOT NULL,
    principal_id text        NOT NULL,
    agent_id     text        NOT NULL,
    idem_key     text        NOT NULL,
    fingerprint  text        NOT NULL,
    run_id       text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, principal_id, agent_id, idem_key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);

-- The run queue (internal/queue/postgres). store.CreateRun inserts the entry
-- in the admission transaction; the queue adapter leases (SELECT ... FOR
-- UPDATE SKIP LOCKED), renews and acks it. id breaks ties between entries
-- enqueued in the same microsecond.
CREATE TABLE queue_entries (
    tenant_id        text        NOT NULL,
    run_id           text        NOT NULL,
    id               bigint      GENERATED ALWAYS AS IDENTITY,
    priority         integer     NOT NULL,
    enqueued_at      timestamptz NOT NULL,
    lease_owner      text,
    lease_token      text,
    lease_expires_at timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, run_id)
);
CREATE INDEX queue_entries_order ON queue_entries (tenant_id, priority DESC, enqueued_at, id);

-- When each tenant was last given a lease: a value of queue_serve_seq (a
-- counter, not a time), for least-recently-served-first fairness.
CREATE SEQUENCE queue_serve_seq;
CREATE TABLE queue_tenants (
    tenant_id   text   NOT NULL PRIMARY KEY,
    last_served bigint NOT NULL
);

-- The audit chain is global (one sequence for the whole node), so seq is
-- unique on its own; tenant_id still leads the primary key.
CREATE TABLE audit_log (
    tenant_id      text        NOT NULL,
    seq            bigint      NOT NULL,
    audit_id       text        NOT NULL,
    time           timestamptz NOT NULL,
    principal_id   text        NOT NULL,
    action         text        NOT NULL,
    target         text        NOT NULL,
    outcome        text        NOT NULL,
    policy_context json,
    details        json,
    correlation_id text        NOT NULL,
    prev_hash      text        NOT NULL,
    hash           text        NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);

-- The head of the audit chain: one row, locked FOR UPDATE by every append so
-- that appends from all replicas are serialized into one chain.
CREATE TABLE audit_head (
    id   integer NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  bigint  NOT NULL,
    hash text    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

CREATE TABLE kv (
    tenant_id text   NOT NULL,
    namespace text   NOT NULL,
    kv_key    text   NOT NULL,
    value     bytea  NOT NULL,
    size      bigint NOT NULL,
    PRIMARY KEY (tenant_id, namespace, kv_key)
);

-- A tenant's total KV bytes; its row is locked by every put and delete of
-- the tenant, so the quota check and the write are atomic.
CREATE TABLE kv_usage (
    tenant_id text   NOT NULL PRIMARY KEY,
    bytes     bigint NOT NULL
);

-- One row per (tenant, window): locked by every reservation of that window,
-- so concurrent reservers never overshoot the budget.
CREATE TABLE budget_windows (
    tenant_id     text        NOT NULL,
    budget_window text        NOT NULL,
    window_start  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, budget_window, window_start)
);

CREATE TABLE budget_reservations (
    tenant_id      text             NOT NULL,
    reservation_id text             NOT NULL,
    budget_window  text             NOT NULL,
    window_start   timestamptz      NOT NULL,
    tokens         bigint           NOT NULL,
    cost_usd       double precision NOT NULL,
    settled        boolean          NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, reservation_id)
);
CREATE INDEX budget_reservations_window ON budget_reservations (tenant_id, budget_window, window_start);

CREATE TABLE usage_records (
    tenant_id     text             NOT NULL,
    usage_id      text             NOT NULL,
    principal_id  text             NOT NULL,
    agent_id      text             NOT NULL,
    run_id        text             NOT NULL,
    model_id      text             NOT NULL,
    backend       text             NOT NULL,
    operation     text             NOT NULL,
    input_tokens  bigint           NOT NULL,
    output_tokens bigint           NOT NULL,
    cost_usd      double precision NOT NULL,
    time          timestamptz      NOT NULL,
    PRIMARY KEY (tenant_id, usage_id)
);
CREATE INDEX usage_records_time ON usage_records (tenant_id, time);

CREATE TABLE forwards (
    tenant_id         text NOT NULL,
    run_id            text NOT NULL,
    peer_stack_id     text NOT NULL,
    principal_id      text NOT NULL,
    remote_events_url text NOT NULL,
    created_at        timestamptz,
    PRIMARY KEY (tenant_id, run_id)
);

-- Token ids seen by federation (replay protection). A JWT id is not tenant
-- scoped: it identifies a token of a peer node.
CREATE TABLE used_jtis (
    jti        text        NOT NULL PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX used_jtis_expires ON used_jtis (expires_at);

CREATE TABLE ingested_events (
    tenant_id    text        NOT NULL,
    event_id     text        NOT NULL,
    run_id       text        NOT NULL,
    sequence     bigint      NOT NULL,
    event        json        NOT NULL,
    source_stack text        NOT NULL,
    ingested_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX ingested_events_run ON ingested_events (tenant_id, run_id, sequence);
