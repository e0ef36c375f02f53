package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/storeutil"
)

// AppendAudit appends r to the global chain: Seq = last+1, PrevHash = the
// last record's Hash ("" for the first), then the record's canonical bytes
// (store.CanonicalAudit) are stored in the record column and Hash is their
// SHA-256. AuditID (ids.New("aud_")) and Time (now) are filled when empty;
// Time is kept UTC with microsecond precision.
// Appends from every replica are serialized by the lock on audit_head.
func (db *DB) AppendAudit(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error) {
	out, err := db.AppendAudits(ctx, []store.AuditRecord{r})
	if err != nil {
		return store.AuditRecord{}, err
	}
	return out[0], nil
}

// AppendAudits appends rs in order in one transaction (see AppendAudit).
func (db *DB) AppendAudits(ctx context.Context, rs []store.AuditRecord) ([]store.AuditRecord, error) {
	rows, err := storeutil.PrepareAudits(rs, db.now)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	var out []store.AuditRecord
	err = db.Tx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = db.appendAuditTx(ctx, tx, rows)
		return err
	})
	return out, err
}

// appendAuditTx appends prepared records inside tx. It locks the chain
// head, so it must be the last lock a transaction takes (CreateRun calls it
// last).
func (db *DB) appendAuditTx(ctx context.Context, tx pgx.Tx, rows []storeutil.AuditRow) ([]store.AuditRecord, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	var lastSeq int64
	var lastHash string
	if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&lastSeq, &lastHash); err != nil {
		return nil, mapErr(err, "audit chain head")
	}
	if err := storeutil.ChainAll(rows, lastSeq, lastHash); err != nil {
		return nil, err
	}
	// One round trip for the rows and the new head.
	b := &pgx.Batch{}
	out := make([]store.AuditRecord, len(rows))
	for i, row := range rows {
		r := row.Record
		b.Queue(`INSERT INTO audit_log (tenant_id, seq, audit_id, time, principal_id, action, target,
			outcome, correlation_id, prev_hash, hash, record, on_behalf_of) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)`,
			r.TenantID, r.Seq, r.AuditID, r.Time, r.PrincipalID, r.Action, r.Target, r.Outcome,
			r.CorrelationID, r.PrevHash, r.Hash, row.Canonical, r.OnBehalfOf)
		out[i] = r
	}
	last := rows[len(rows)-1].Record
	b.Queue(`UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1`, last.Seq, last.Hash)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, mapErr(err, "audit record")
	}
	return out, nil
}

// ListAudit lists records in Seq order; TenantID "" lists every tenant.
func (db *DB) ListAudit(ctx context.Context, p store.ListAuditParams) ([]store.AuditRecord, error) {
	limit := storeutil.Limit(p.Limit, storeutil.DefaultAuditLimit, storeutil.MaxAuditLimit)
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
		return r, storeutil.DecodeAudit(&r, record, pc, details)
	})
	return out, mapErr(err, "audit log")
}
