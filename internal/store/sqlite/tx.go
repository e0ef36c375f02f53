package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// stmts is one write transaction's statements in SQLite's dialect, for the
// logic sqlstore shares with the PostgreSQL adapter.
type stmts struct{ tx *Tx }

var _ sqlstore.Tx = stmts{}

// begin is WriteTx for sqlstore: fn gets the transaction's statements.
func (db *DB) begin(ctx context.Context, fn func(sqlstore.Tx) error) error {
	return db.WriteTx(ctx, func(tx *Tx) error { return fn(stmts{tx}) })
}

// LockRun reads the run and its last sequence (the highest of its events):
// the write lock every write transaction holds keeps both as read.
func (s stmts) LockRun(ctx context.Context, tenantID, runID string) (sqlstore.RunState, error) {
	var st sqlstore.RunState
	err := s.tx.QueryRowContext(ctx, `SELECT status, agent_id, attempt,
		(SELECT coalesce(max(sequence), 0) FROM events WHERE tenant_id = runs.tenant_id AND run_id = runs.run_id)
		FROM runs WHERE tenant_id = ? AND run_id = ?`, tenantID, runID).
		Scan(&st.Status, &st.AgentID, &st.Attempt, &st.LastSequence)
	return st, mapErr(err, "run "+runID)
}

func (s stmts) UpdateRun(ctx context.Context, tenantID, runID string, u sqlstore.RunUpdate) error {
	var err error
	if u.StatusOnly {
		_, err = s.tx.ExecContext(ctx, `UPDATE runs SET status = ?, completed_at = ?, output = ?, error = ?
			WHERE tenant_id = ? AND run_id = ?`, u.Status, microsPtr(u.CompletedAt), u.Output, u.Error, tenantID, runID)
	} else {
		_, err = s.tx.ExecContext(ctx, `UPDATE runs SET status = ?, started_at = ?, completed_at = ?, summary = ?,
			output = ?, error = ?, attempt = ? WHERE tenant_id = ? AND run_id = ?`, u.Status, microsPtr(u.StartedAt),
			microsPtr(u.CompletedAt), u.Summary, u.Output, u.Error, u.Attempt, tenantID, runID)
	}
	return mapErr(err, "run "+runID)
}

func (s stmts) PutStep(ctx context.Context, st store.Step) error {
	_, err := s.tx.ExecContext(ctx, `INSERT INTO steps (tenant_id, run_id, step_id, idx, kind, name, status,
		tool_call_id, input, output, started_at, completed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) `+sqlstore.StepUpsert,
		st.TenantID, st.RunID, st.StepID, st.Index, st.Kind, st.Name, st.Status, st.ToolCallID,
		sqlstore.RawOrNull(st.Input), sqlstore.RawOrNull(st.Output), micros(st.StartedAt), microsPtr(st.CompletedAt))
	return mapErr(err, "step "+st.StepID)
}

func (s stmts) InsertEvent(ctx context.Context, e store.Event) error {
	var stepID any
	if e.StepID != nil {
		stepID = *e.StepID
	}
	_, err := s.tx.ExecContext(ctx, `INSERT INTO events (tenant_id, run_id, sequence, event_id, time, type, agent_id,
		step_id, traceparent, span_id, payload) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
		e.TenantID, e.RunID, e.Sequence, e.EventID, micros(e.Time), e.Type, e.AgentID, stepID,
		e.Trace.Traceparent, e.Trace.SpanID, sqlstore.RawOrNull(e.Payload))
	return mapErr(err, "event")
}

// SetLastSequence records nothing: LockRun reads the last sequence from
// the events themselves.
func (s stmts) SetLastSequence(context.Context, string, string, int64) error { return nil }

func (s stmts) InsertRun(ctx context.Context, r store.Run, c sqlstore.RunColumns) error {
	_, err := s.tx.ExecContext(ctx, `INSERT INTO runs (`+runCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.TenantID, r.RunID, r.AgentID, r.PrincipalID, string(r.Status), micros(r.CreatedAt), microsPtr(r.StartedAt),
		microsPtr(r.CompletedAt), c.Input, sqlstore.RawOrNull(r.Context), c.Tooling, c.RunOptions, c.Summary,
		c.Output, c.Error, r.EventsURL, r.CorrelationID, r.Traceparent, r.IdempotencyKey, r.Attempt,
		r.ThreadID, r.MultitaskStrategy)
	return mapErr(err, "run "+r.RunID)
}

func (s stmts) Enqueue(ctx context.Context, tenantID, runID string, priority int, at time.Time) error {
	_, err := s.tx.ExecContext(ctx, `INSERT INTO queue_entries (tenant_id, run_id, priority, enqueued_at)
		VALUES (?,?,?,?) ON CONFLICT (tenant_id, run_id) DO NOTHING`, tenantID, runID, priority, at.UnixMicro())
	return mapErr(err, "queue entry")
}

// AppendAudit continues the chain from the log's last record: the write
// lock keeps it the last until the transaction ends.
func (s stmts) AppendAudit(ctx context.Context, rows []sqlstore.AuditRow) ([]store.AuditRecord, error) {
	var lastSeq int64
	var lastHash string
	err := s.tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&lastSeq, &lastHash)
	if err != nil && err != sql.ErrNoRows {
		return nil, mapErr(err, "audit log")
	}
	if err := sqlstore.ChainAll(rows, lastSeq, lastHash); err != nil {
		return nil, err
	}
	out := make([]store.AuditRecord, len(rows))
	for i, row := range rows {
		r := row.Record
		if _, err := s.tx.ExecContext(ctx, `INSERT INTO audit_log (tenant_id, seq, audit_id, time, principal_id, action, target,
			outcome, correlation_id, prev_hash, hash, record, on_behalf_of) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			r.TenantID, r.Seq, r.AuditID, r.Time.UnixMicro(), r.PrincipalID, r.Action, r.Target, r.Outcome,
			r.CorrelationID, r.PrevHash, r.Hash, row.Canonical, r.OnBehalfOf); err != nil {
			return nil, mapErr(err, "audit record "+r.AuditID)
		}
		out[i] = r
	}
	return out, nil
}
