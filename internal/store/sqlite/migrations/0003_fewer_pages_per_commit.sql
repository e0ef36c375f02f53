-- Every commit writes one WAL frame per b-tree page it touched. Admitting a
-- run touched 13 pages; these changes bring it to 9 without changing what
-- the tables hold:
--   events and queue_entries become WITHOUT ROWID (the primary key is the
--   table, no separate key index); audit_log keys its rows by seq (the
--   rowid) with one (tenant_id, seq) index; runs_status goes (only the rare
--   recovery listing used it).
-- No table references events, queue_entries or audit_log, so they can be
-- rebuilt with foreign keys on.

CREATE TABLE events_new (
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
) WITHOUT ROWID;
INSERT INTO events_new SELECT tenant_id, run_id, sequence, event_id, time, type, agent_id, step_id, traceparent, span_id, payload FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

CREATE TABLE queue_entries_new (
    tenant_id        TEXT    NOT NULL,
    run_id           TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    enqueued_at      INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, run_id)
) WITHOUT ROWID;
INSERT INTO queue_entries_new SELECT tenant_id, run_id, priority, enqueued_at, lease_owner, lease_token, lease_expires_at, attempts FROM queue_entries;
DROP TABLE queue_entries;
ALTER TABLE queue_entries_new RENAME TO queue_entries;
CREATE INDEX queue_entries_order ON queue_entries (tenant_id, priority DESC, enqueued_at);
CREATE INDEX queue_entries_lease ON queue_entries (lease_expires_at);

CREATE TABLE audit_log_new (
    seq            INTEGER PRIMARY KEY,
    tenant_id      TEXT    NOT NULL,
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
    hash           TEXT    NOT NULL
);
INSERT INTO audit_log_new (seq, tenant_id, audit_id, time, principal_id, action, target, outcome, policy_context,
    details, correlation_id, prev_hash, hash)
    SELECT seq, tenant_id, audit_id, time, principal_id, action, target, outcome, policy_context, details,
    correlation_id, prev_hash, hash FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, seq);

DROP INDEX runs_status;
