package sqlite

import (
	"context"
	"database/sql"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// ListAudit lists records in Seq order; TenantID "" lists every tenant.
func (db *DB) ListAudit(ctx context.Context, p store.ListAuditParams) ([]store.AuditRecord, error) {
	limit := sqlstore.Limit(p.Limit, sqlstore.DefaultAuditLimit, sqlstore.MaxAuditLimit)
	q := `SELECT tenant_id, seq, audit_id, time, principal_id, action, target, outcome, policy_context, details,
		correlation_id, prev_hash, hash, record, on_behalf_of FROM audit_log WHERE `
	args := []any{}
	if p.TenantID != "" {
		q += `tenant_id = ? AND `
		args = append(args, p.TenantID)
	}
	q += `seq > ? ORDER BY seq LIMIT ?`
	args = append(args, p.AfterSeq, limit)
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err, "audit log")
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		var r store.AuditRecord
		var t int64
		var pc, details sql.NullString
		var record []byte
		if err := rows.Scan(&r.TenantID, &r.Seq, &r.AuditID, &t, &r.PrincipalID, &r.Action, &r.Target, &r.Outcome,
			&pc, &details, &r.CorrelationID, &r.PrevHash, &r.Hash, &record, &r.OnBehalfOf); err != nil {
			return nil, mapErr(err, "audit log")
		}
		r.Time = fromMicros(sql.NullInt64{Int64: t, Valid: true})
		if err := sqlstore.DecodeAudit(&r, record, nullBytes(pc), nullBytes(details)); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, mapErr(rows.Err(), "audit log")
}
