-- The principal an audit record's actor (principal_id) acted for, when
-- that is another principal (a service or the orchestrator acting for a
-- user); '' otherwise, as for every record written before this column.
ALTER TABLE audit_log ADD COLUMN on_behalf_of text NOT NULL DEFAULT '';
-- The principal that made a metered call on behalf of the record's
-- principal_id (whose usage it is), when that is another principal.
ALTER TABLE usage_records ADD COLUMN actor_id text NOT NULL DEFAULT '';
