-- Worker nodes an admin registered (storage key workers/{worker_id}):
-- platform-wide, like tenants. public_key is the worker's NATS user nkey
-- (the seed never reaches the node); labels and tenants are JSON text.
CREATE TABLE workers (
    worker_id  TEXT    NOT NULL PRIMARY KEY,
    labels     TEXT    NOT NULL,
    public_key TEXT    NOT NULL UNIQUE,
    tenants    TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    created_at INTEGER,
    updated_at INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;
