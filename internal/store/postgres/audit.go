package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// AppendAudit appends r to the global chain: Seq = last+1, PrevHash = the
// last record's Hash ("" for the first), then the record's canonical bytes
// (store.CanonicalAudit) are stored in the record column and Hash is their
// SHA-256. AuditID (ids.New("aud_")) and Time (now) are filled when empty;
// Time is kept UTC with microsecond precision. Appends from every replica
// are serialized by the lock on audit_head (stmts.AppendAudit).
func (db *DB) AppendAudit(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error) {
	return sqlstore.AppendAudit(ctx, db.begin, r, db.now)
}

// AppendAudits appends rs in order in one transaction (see AppendAudit).
func (db *DB) AppendAudits(ctx context.Context, rs []store.AuditRecord) ([]store.AuditRecord, error) {
	return sqlstore.AppendAudits(ctx, db.begin, rs, db.now)
}

// ListAudit lists records in Seq order; TenantID "" lists every tenant.
func (db *DB) ListAudit(ctx context.Context, p store.ListAuditParams) ([]store.AuditRecord, error) {
	limit := sqlstore.Limit(p.Limit, sqlstore.DefaultAuditLimit, sqlstore.MaxAuditLimit)
	q := `SELECT tenant_id, seq, audit_id, time, principal_id, action, target, outcome, policy_context, details,
		correlation_id, prev_hash, hash, record, on_behalf_of FROM audit_log WHERE `
	args := []any{p.AfterSeq, limit}
	if p.TenantID != "" {
		q += `tenant_id = $3 AND `
		args = append(args, p.TenantID)
	}
	q += `seq > $1 ORDER BY seq LIMIT $2`
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err, "audit log")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AuditRecord, error) {
		var r store.AuditRecord
		var t time.Time
		var pc, details, record []byte
		if err := row.Scan(&r.TenantID, &r.Seq, &r.AuditID, &t, &r.PrincipalID, &r.Action, &r.Target, &r.Outcome,
			&pc, &details, &r.CorrelationID, &r.PrevHash, &r.Hash, &record, &r.OnBehalfOf); err != nil {
			return r, err
		}
		r.Time = t.UTC()
		return r, sqlstore.DecodeAudit(&r, record, pc, details)
	})
	return out, mapErr(err, "audit log")
}
