package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

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
