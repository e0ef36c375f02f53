-- Unexpired leases are counted per tenant on every lease call; without this
-- index that count scans the whole queue.
CREATE INDEX queue_entries_lease ON queue_entries (lease_expires_at);
