package sqlite

import (
	"context"
	"database/sql"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// AppendAudit appends r to the global chain: Seq = last+1, PrevHash = the
// last record's Hash ("" for the first), then the record's canonical bytes
// (store.CanonicalAudit) are stored in the record column and Hash is their
// SHA-256. AuditID (ids.New("aud_")) and Time (now) are filled when empty;
// Time is kept UTC with microsecond precision.
func (db *DB) AppendAudit(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error) {
	return sqlstore.AppendAudit(ctx, db.begin, r, db.now)
}

// AppendAudits appends rs in order in one write transaction (see
// AppendAudit); the records are encoded before, not in the single writer.
func (db *DB) AppendAudits(ctx context.Context, rs []store.AuditRecord) ([]store.AuditRecord, error) {
	return sqlstore.AppendAudits(ctx, db.begin, rs, db.now)
}

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
