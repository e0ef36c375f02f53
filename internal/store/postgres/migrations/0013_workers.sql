-- Worker nodes an admin registered (storage key workers/{worker_id}):
-- platform-wide, like tenants. public_key is the worker's NATS user nkey
-- (the seed never reaches the node); labels and tenants are JSON text.
CREATE TABLE workers (
    worker_id  text NOT NULL PRIMARY KEY,
    labels     text NOT NULL,
    public_key text NOT NULL UNIQUE,
    tenants    text NOT NULL,
    status     text NOT NULL,
    created_at timestamptz,
    updated_at timestamptz,
    revoked_at timestamptz
);
