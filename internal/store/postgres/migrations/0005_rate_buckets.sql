-- One token bucket per (tenant, limit name), shared by every replica of the
-- node (internal/tenancy.SharedLimiter over DB.TakeToken). rate and burst
-- are the quota last applied, so a changed quota is applied in place;
-- updated_at is the database's clock, never a replica's.
CREATE TABLE rate_buckets (
    tenant_id  text             NOT NULL,
    name       text             NOT NULL,
    tokens     double precision NOT NULL,
    rate       double precision NOT NULL,
    burst      integer          NOT NULL,
    admitted   boolean          NOT NULL,
    updated_at timestamptz      NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
