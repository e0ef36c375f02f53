package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// DefaultIdempotencyTTL is used when CreateRunParams.IdempotencyTTL is 0.
const DefaultIdempotencyTTL = sqlstore.DefaultIdempotencyTTL

// CreateRun admits a run in one transaction: idempotency lookup/insert, run
// row, first event (sequence 1), a queue_entries row (only when the run is
// queued) and the audit record.
//
// Defaults: RunID ids.New("run_"), Status queued, CreatedAt now, FirstEvent
// type run.created with EventID/Time filled; FirstEvent's tenant, agent and
// run ids are taken from the run. Times are stored UTC with microsecond
// precision; the returned run is what GetRun returns.
func (db *DB) CreateRun(ctx context.Context, p store.CreateRunParams) (store.CreateRunResult, error) {
	nr, err := sqlstore.PrepareRun(p, db.now)
	if err != nil {
		return store.CreateRunResult{}, err
	}
	r, ttl, now := nr.Run, nr.TTL, nr.Now
	var res store.CreateRunResult
	err = db.WriteTx(ctx, func(tx *Tx) error {
		if p.IdempotencyKey != "" {
			var fp, runID string
			var expires int64
			err := tx.QueryRowContext(ctx, `SELECT fingerprint, run_id, expires_at FROM idempotency_keys
				WHERE tenant_id = ? AND principal_id = ? AND agent_id = ? AND idem_key = ?`,
				r.TenantID, r.PrincipalID, r.AgentID, p.IdempotencyKey).Scan(&fp, &runID, &expires)
			live := err == nil && expires > now.UnixMicro()
			if p.ReplayOnly && (err == sql.ErrNoRows || err == nil && !live) {
				return errs.E(errs.NotFound, "idempotency key %q not found", p.IdempotencyKey)
			}
			switch {
			case err == sql.ErrNoRows:
			case err != nil:
				return err
			case live:
				if fp != p.Fingerprint {
					return sqlstore.IdempotencyConflict(p.IdempotencyKey, runID)
				}
				orig, err := scanRun(tx.QueryRowContext(ctx, `SELECT `+runCols+` FROM runs WHERE tenant_id = ? AND run_id = ?`,
					r.TenantID, runID))
				if err != nil {
					return mapErr(err, "run "+runID)
				}
				res = store.CreateRunResult{Run: orig, Replayed: true}
				return nil
			default: // expired: forget it
				if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys
					WHERE tenant_id = ? AND principal_id = ? AND agent_id = ? AND idem_key = ?`,
					r.TenantID, r.PrincipalID, r.AgentID, p.IdempotencyKey); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (tenant_id, principal_id, agent_id, idem_key,
				fingerprint, run_id, created_at, expires_at) VALUES (?,?,?,?,?,?,?,?)`,
				r.TenantID, r.PrincipalID, r.AgentID, p.IdempotencyKey, p.Fingerprint, r.RunID,
				now.UnixMicro(), now.Add(ttl).UnixMicro()); err != nil {
				return mapErr(err, "idempotency key")
			}
		}
		if p.ReplayOnly {
			return errs.E(errs.NotFound, "replay-only create without an idempotency key")
		}
		var err error
		res, err = sqlstore.Admit(ctx, stmts{tx}, nr, p.Priority)
		return err
	})
	if err != nil {
		return store.CreateRunResult{}, err
	}
	return res, nil
}

const runCols = `tenant_id, run_id, agent_id, principal_id, status, created_at, started_at, completed_at, input, context,
	tooling, run_options, summary, output, error, events_url, correlation_id, traceparent, idempotency_key, attempt,
	thread_id, multitask_strategy`

func scanRun(row interface{ Scan(...any) error }) (store.Run, error) {
	var r store.Run
	var status string
	var created, started, completed sql.NullInt64
	var input, rctx, tooling, opts, summary, output, errBody sql.NullString
	if err := row.Scan(&r.TenantID, &r.RunID, &r.AgentID, &r.PrincipalID, &status, &created, &started, &completed,
		&input, &rctx, &tooling, &opts, &summary, &output, &errBody, &r.EventsURL, &r.CorrelationID,
		&r.Traceparent, &r.IdempotencyKey, &r.Attempt, &r.ThreadID, &r.MultitaskStrategy); err != nil {
		return r, err
	}
	r.Status = store.RunStatus(status)
	r.CreatedAt, r.StartedAt, r.CompletedAt = fromMicros(created), fromMicrosPtr(started), fromMicrosPtr(completed)
	r.Context = sqlstore.RawFrom(nullBytes(rctx))
	return r, sqlstore.DecodeRun(&r, nullBytes(input), nullBytes(tooling), nullBytes(opts), nullBytes(summary),
		nullBytes(output), nullBytes(errBody))
}

// GetRun returns ErrNotFound if absent or in another tenant.
func (db *DB) GetRun(ctx context.Context, tenantID, runID string) (store.Run, error) {
	r, err := scanRun(db.queryRow(ctx, `SELECT `+runCols+` FROM runs WHERE tenant_id = ? AND run_id = ?`,
		tenantID, runID))
	return r, mapErr(err, "run "+runID)
}

// ListRuns lists a tenant's runs newest first (created_at, then run_id,
// descending). The cursor is the last run_id of the previous page; an
// unknown cursor is an invalid_request naming "cursor".
func (db *DB) ListRuns(ctx context.Context, p store.ListRunsParams) ([]store.Run, string, error) {
	if err := p.Validate(); err != nil {
		return nil, "", err
	}
	limit := sqlstore.Limit(p.Limit, sqlstore.DefaultRunLimit, sqlstore.MaxRunLimit)
	q := `SELECT ` + runCols + ` FROM runs WHERE tenant_id = ?`
	args := []any{p.TenantID}
	if p.AgentID != "" {
		q += ` AND agent_id = ?`
		args = append(args, p.AgentID)
	}
	if p.Status != "" {
		q += ` AND status = ?`
		args = append(args, p.Status)
	}
	if p.ThreadID != "" {
		// thread_id <> '' lets the planner use the partial index runs_thread.
		q += ` AND thread_id = ? AND thread_id <> ''`
		args = append(args, p.ThreadID)
	}
	if p.Cursor != "" {
		var created sql.NullInt64
		err := db.queryRow(ctx, `SELECT created_at FROM runs WHERE tenant_id = ? AND run_id = ?`,
			p.TenantID, p.Cursor).Scan(&created)
		if err == sql.ErrNoRows {
			return nil, "", errs.Field("cursor", "unknown cursor %q", p.Cursor)
		}
		if err != nil {
			return nil, "", mapErr(err, "runs")
		}
		q += ` AND (coalesce(created_at, 0) < ? OR (coalesce(created_at, 0) = ? AND run_id < ?))`
		args = append(args, created.Int64, created.Int64, p.Cursor)
	}
	q += ` ORDER BY coalesce(created_at, 0) DESC, run_id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, "", mapErr(err, "runs")
	}
	defer rows.Close()
	var out []store.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, "", mapErr(err, "runs")
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, "", mapErr(err, "runs")
	}
	out, next := sqlstore.Page(out, limit)
	return out, next, nil
}

// ListSteps returns a run's steps ordered by Index (then step id).
func (db *DB) ListSteps(ctx context.Context, tenantID, runID string) ([]store.Step, error) {
	rows, err := db.query(ctx, `SELECT tenant_id, run_id, step_id, idx, kind, name, status, tool_call_id,
		input, output, started_at, completed_at FROM steps WHERE tenant_id = ? AND run_id = ? ORDER BY idx, step_id`,
		tenantID, runID)
	if err != nil {
		return nil, mapErr(err, "steps")
	}
	defer rows.Close()
	var out []store.Step
	for rows.Next() {
		var s store.Step
		var input, output sql.NullString
		var started, completed sql.NullInt64
		if err := rows.Scan(&s.TenantID, &s.RunID, &s.StepID, &s.Index, &s.Kind, &s.Name, &s.Status, &s.ToolCallID,
			&input, &output, &started, &completed); err != nil {
			return nil, mapErr(err, "steps")
		}
		s.Input, s.Output = sqlstore.RawFrom(nullBytes(input)), sqlstore.RawFrom(nullBytes(output))
		s.StartedAt, s.CompletedAt = fromMicros(started), fromMicrosPtr(completed)
		out = append(out, s)
	}
	return out, mapErr(rows.Err(), "steps")
}

// PurgeIdempotency deletes idempotency keys that expired at or before now.
func (db *DB) PurgeIdempotency(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE expires_at <= ?`, sqlstore.UTC(now).UnixMicro())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// ListEvents returns events with sequence > AfterSequence in order.
// ErrNotFound if the run is absent or in another tenant.
func (db *DB) ListEvents(ctx context.Context, p store.ListEventsParams) ([]store.Event, error) {
	var one int
	if err := db.queryRow(ctx, `SELECT 1 FROM runs WHERE tenant_id = ? AND run_id = ?`,
		p.TenantID, p.RunID).Scan(&one); err != nil {
		return nil, mapErr(err, "run "+p.RunID)
	}
	limit := sqlstore.Limit(p.Limit, sqlstore.DefaultEventLimit, sqlstore.MaxEventLimit)
	rows, err := db.query(ctx, `SELECT tenant_id, run_id, sequence, event_id, time, type, agent_id, step_id,
		traceparent, span_id, payload FROM events WHERE tenant_id = ? AND run_id = ? AND sequence > ?
		ORDER BY sequence LIMIT ?`, p.TenantID, p.RunID, p.AfterSequence, limit)
	if err != nil {
		return nil, mapErr(err, "events")
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var e store.Event
		var t sql.NullInt64
		var stepID, payload sql.NullString
		if err := rows.Scan(&e.TenantID, &e.RunID, &e.Sequence, &e.EventID, &t, &e.Type, &e.AgentID, &stepID,
			&e.Trace.Traceparent, &e.Trace.SpanID, &payload); err != nil {
			return nil, mapErr(err, "events")
		}
		e.Time = fromMicros(t)
		if stepID.Valid {
			s := stepID.String
			e.StepID = &s
		}
		e.Payload = sqlstore.RawFrom(nullBytes(payload))
		out = append(out, e)
	}
	return out, mapErr(rows.Err(), "events")
}
