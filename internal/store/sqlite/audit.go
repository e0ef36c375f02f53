package sqlite

import (
	"context"
	"database/sql"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/storeutil"
)

// AppendAudit appends r to the global chain: Seq = last+1, PrevHash = the
// last record's Hash ("" for the first), then the record's canonical bytes
// (store.CanonicalAudit) are stored in the record column and Hash is their
// SHA-256. AuditID (ids.New("aud_")) and Time (now) are filled when empty;
// Time is kept UTC with microsecond precision.
func (db *DB) AppendAudit(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error) {
	out, err := db.AppendAudits(ctx, []store.AuditRecord{r})
	if err != nil {
		return store.AuditRecord{}, err
	}
	return out[0], nil
}

// AppendAudits appends rs in order in one transaction (see AppendAudit).
func (db *DB) AppendAudits(ctx context.Context, rs []store.AuditRecord) ([]store.AuditRecord, error) {
	// The map columns are encoded here, not in the (single) writer.
	rows, err := storeutil.PrepareAudits(rs, db.now)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	var out []store.AuditRecord
	err = db.WriteTx(ctx, func(tx *Tx) error {
		var err error
		out, err = db.appendAuditTx(ctx, tx, rows)
		return err
	})
	return out, err
}

// appendAuditTx appends prepared records (storeutil.PrepareAudits) inside tx.
func (db *DB) appendAuditTx(ctx context.Context, tx *Tx, rows []storeutil.AuditRow) ([]store.AuditRecord, error) {
	var lastSeq int64
	var lastHash string
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&lastSeq, &lastHash)
	if err != nil && err != sql.ErrNoRows {
		return nil, mapErr(err, "audit log")
	}
	if err := storeutil.ChainAll(rows, lastSeq, lastHash); err != nil {
		return nil, err
	}
	out := make([]store.AuditRecord, len(rows))
	for i, row := range rows {
		r := row.Record
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log (tenant_id, seq, audit_id, time, principal_id, action, target,
			outcome, correlation_id, prev_hash, hash, record, on_behalf_of) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			r.TenantID, r.Seq, r.AuditID, r.Time.UnixMicro(), r.PrincipalID, r.Action, r.Target, r.Outcome,
			r.CorrelationID, r.PrevHash, r.Hash, row.Canonical, r.OnBehalfOf); err != nil {
			return nil, mapErr(err, "audit record "+r.AuditID)
		}
		out[i] = r
	}
	return out, nil
}

// ListAudit lists records in Seq order; TenantID "" lists every tenant.
func (db *DB) ListAudit(ctx context.Context, p store.ListAuditParams) ([]store.AuditRecord, error) {
	limit := storeutil.Limit(p.Limit, storeutil.DefaultAuditLimit, storeutil.MaxAuditLimit)
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
		if err := storeutil.DecodeAudit(&r, record, nullBytes(pc), nullBytes(details)); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, mapErr(rows.Err(), "audit log")
}
