package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// stmts is one transaction's statements in PostgreSQL's dialect, for the
// logic sqlstore shares with the SQLite adapter.
type stmts struct{ tx pgx.Tx }

var _ sqlstore.Tx = stmts{}

// begin is Tx for sqlstore: fn gets the transaction's statements.
func (db *DB) begin(ctx context.Context, fn func(sqlstore.Tx) error) error {
	return db.Tx(ctx, func(tx pgx.Tx) error { return fn(stmts{tx}) })
}

// LockRun locks the run row (FOR UPDATE) until the transaction ends; the
// last sequence is kept in runs.last_sequence.
func (s stmts) LockRun(ctx context.Context, tenantID, runID string) (sqlstore.RunState, error) {
	var st sqlstore.RunState
	err := s.tx.QueryRow(ctx, `SELECT status, agent_id, attempt, last_sequence FROM runs
		WHERE tenant_id = $1 AND run_id = $2 FOR UPDATE`, tenantID, runID).
		Scan(&st.Status, &st.AgentID, &st.Attempt, &st.LastSequence)
	return st, mapErr(err, "run "+runID)
}

func (s stmts) UpdateRun(ctx context.Context, tenantID, runID string, u sqlstore.RunUpdate) error {
	var err error
	if u.StatusOnly {
		_, err = s.tx.Exec(ctx, `UPDATE runs SET status = $3, completed_at = $4, output = $5, error = $6
			WHERE tenant_id = $1 AND run_id = $2`, tenantID, runID, u.Status, tsPtr(u.CompletedAt), u.Output, u.Error)
	} else {
		_, err = s.tx.Exec(ctx, `UPDATE runs SET status = $3, started_at = $4, completed_at = $5, summary = $6,
			output = $7, error = $8, attempt = $9 WHERE tenant_id = $1 AND run_id = $2`, tenantID, runID,
			u.Status, tsPtr(u.StartedAt), tsPtr(u.CompletedAt), u.Summary, u.Output, u.Error, u.Attempt)
	}
	return mapErr(err, "run "+runID)
}

func (s stmts) PutStep(ctx context.Context, st store.Step) error {
	_, err := s.tx.Exec(ctx, `INSERT INTO steps (tenant_id, run_id, step_id, idx, kind, name, status,
		tool_call_id, input, output, started_at, completed_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) `+sqlstore.StepUpsert,
		st.TenantID, st.RunID, st.StepID, st.Index, st.Kind, st.Name, st.Status, st.ToolCallID,
		sqlstore.RawOrNull(st.Input), sqlstore.RawOrNull(st.Output), ts(st.StartedAt), tsPtr(st.CompletedAt))
	return mapErr(err, "step "+st.StepID)
}

func (s stmts) InsertEvent(ctx context.Context, e store.Event) error {
	_, err := s.tx.Exec(ctx, `INSERT INTO events (tenant_id, run_id, sequence, event_id, time, type, agent_id,
		step_id, traceparent, span_id, payload) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
		e.TenantID, e.RunID, e.Sequence, e.EventID, ts(e.Time), e.Type, e.AgentID, e.StepID,
		e.Trace.Traceparent, e.Trace.SpanID, sqlstore.RawOrNull(e.Payload))
	return mapErr(err, "event")
}

func (s stmts) SetLastSequence(ctx context.Context, tenantID, runID string, seq int64) error {
	_, err := s.tx.Exec(ctx, `UPDATE runs SET last_sequence = $3 WHERE tenant_id = $1 AND run_id = $2`,
		tenantID, runID, seq)
	return mapErr(err, "run "+runID)
}

// InsertRun inserts the run with last_sequence 1: its first event is
// inserted next, in the same transaction.
func (s stmts) InsertRun(ctx context.Context, r store.Run, c sqlstore.RunColumns) error {
	_, err := s.tx.Exec(ctx, `INSERT INTO runs (`+runCols+`, last_sequence)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,1)`,
		r.TenantID, r.RunID, r.AgentID, r.PrincipalID, string(r.Status), ts(r.CreatedAt), tsPtr(r.StartedAt),
		tsPtr(r.CompletedAt), c.Input, sqlstore.RawOrNull(r.Context), c.Tooling, c.RunOptions, c.Summary, c.Output,
		c.Error, r.EventsURL, r.CorrelationID, r.Traceparent, r.IdempotencyKey, r.Attempt, r.ThreadID, r.MultitaskStrategy)
	return mapErr(err, "run "+r.RunID)
}

func (s stmts) Enqueue(ctx context.Context, tenantID, runID string, priority int, at time.Time) error {
	_, err := s.tx.Exec(ctx, `INSERT INTO queue_entries (tenant_id, run_id, priority, enqueued_at)
		VALUES ($1,$2,$3,$4) ON CONFLICT (tenant_id, run_id) DO NOTHING`, tenantID, runID, priority, at)
	return mapErr(err, "queue entry")
}

// AppendAudit locks the chain head (audit_head), so appends from every
// replica are one chain; it must be the last lock a transaction takes
// (CreateRun appends last).
func (s stmts) AppendAudit(ctx context.Context, rows []sqlstore.AuditRow) ([]store.AuditRecord, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	var lastSeq int64
	var lastHash string
	if err := s.tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&lastSeq, &lastHash); err != nil {
		return nil, mapErr(err, "audit chain head")
	}
	if err := sqlstore.ChainAll(rows, lastSeq, lastHash); err != nil {
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
	if err := s.tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, mapErr(err, "audit record")
	}
	return out, nil
}
