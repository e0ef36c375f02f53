-- The canonical bytes of each audit record (RFC 8785 JSON of every field
-- except hash), written once; hash = SHA-256 of exactly these bytes. bytea,
-- not json(b), so they read back byte for byte. Rows written before this
-- column existed keep it NULL and are verified by the legacy rule (see
-- internal/audit).
ALTER TABLE audit_log ADD COLUMN record bytea;
