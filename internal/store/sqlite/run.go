package sqlite

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// DefaultIdempotencyTTL is used when CreateRunParams.IdempotencyTTL is 0.
const DefaultIdempotencyTTL = 24 * time.Hour

// Limits of list calls.
const (
	defaultRunLimit   = 50
	maxRunLimit       = 1000
	defaultEventLimit = 1000
	maxEventLimit     = 10000
)

func validStatus(s store.RunStatus) bool {
	switch s {
	case store.RunQueued, store.RunRunning, store.RunCompleted, store.RunFailed, store.RunCanceled:
		return true
	}
	return false
}

// CreateRun admits a run in one transaction: idempotency lookup/insert, run
// row, first event (sequence 1), a queue_entries row (only when the run is
// queued) and the audit record.
//
// Defaults: RunID ids.New("run_"), Status queued, CreatedAt now, FirstEvent
// type run.created with EventID/Time filled; FirstEvent's tenant, agent and
// run ids are taken from the run. Times are stored UTC with microsecond
// precision; the returned run is what GetRun returns.
func (db *DB) CreateRun(ctx context.Context, p store.CreateRunParams) (store.CreateRunResult, error) {
	r := p.Run
	if err := required("tenant_id", r.TenantID, "agent_id", r.AgentID); err != nil {
		return store.CreateRunResult{}, err
	}
	if r.RunID == "" {
		r.RunID = ids.New("run_")
	}
	if r.Status == "" {
		r.Status = store.RunQueued
	}
	if !validStatus(r.Status) {
		return store.CreateRunResult{}, errs.Field("status", "unknown run status %q", r.Status)
	}
	if p.IdempotencyTTL < 0 {
		return store.CreateRunResult{}, errs.Field("idempotency_ttl", "must not be negative")
	}
	r.IdempotencyKey = p.IdempotencyKey
	now := db.now()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now
	}
	normalizeRun(&r)
	args, err := runArgs(r)
	if err != nil {
		return store.CreateRunResult{}, err
	}
	ev := p.FirstEvent
	ev.TenantID, ev.AgentID, ev.RunID, ev.Sequence = r.TenantID, r.AgentID, r.RunID, 1
	if ev.Type == "" {
		ev.Type = store.EventRunCreated
	}
	fillEvent(&ev, now)
	ttl := p.IdempotencyTTL
	if ttl == 0 {
		ttl = DefaultIdempotencyTTL
	}

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
					return errs.E(errs.Conflict, "Idempotency-Key %q was used with a different request body", p.IdempotencyKey).
						WithDetails(map[string]any{"run_id": runID})
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
		if _, err := tx.ExecContext(ctx, `INSERT INTO runs (`+runCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, args...); err != nil {
			return mapErr(err, "run "+r.RunID)
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		if r.Status == store.RunQueued {
			if _, err := tx.ExecContext(ctx, `INSERT INTO queue_entries (tenant_id, run_id, priority, enqueued_at)
				VALUES (?,?,?,?) ON CONFLICT (tenant_id, run_id) DO NOTHING`,
				r.TenantID, r.RunID, p.Priority, now.UnixMicro()); err != nil {
				return mapErr(err, "queue entry")
			}
		}
		if p.Audit != nil {
			if _, err := db.appendAuditTx(ctx, tx, *p.Audit); err != nil {
				return err
			}
		}
		res = store.CreateRunResult{Run: r}
		return nil
	})
	if err != nil {
		return store.CreateRunResult{}, err
	}
	return res, nil
}

func normalizeRun(r *store.Run) {
	r.CreatedAt = utc(r.CreatedAt)
	r.StartedAt = utcPtr(r.StartedAt)
	r.CompletedAt = utcPtr(r.CompletedAt)
	if len(r.Context) == 0 {
		r.Context = nil
	}
}

const runCols = `tenant_id, run_id, agent_id, principal_id, status, created_at, started_at, completed_at, input, context,
	tooling, run_options, summary, output, error, events_url, correlation_id, traceparent, idempotency_key, attempt`

func runArgs(r store.Run) ([]any, error) {
	input, err := toJSON("input", r.Input)
	if err != nil {
		return nil, err
	}
	tooling, err := toJSON("tooling", r.Tooling)
	if err != nil {
		return nil, err
	}
	opts, err := toJSON("run_options", r.RunOptions)
	if err != nil {
		return nil, err
	}
	summary, err := toJSON("summary", r.Summary)
	if err != nil {
		return nil, err
	}
	output, errBody, err := runResultArgs(r)
	if err != nil {
		return nil, err
	}
	return []any{r.TenantID, r.RunID, r.AgentID, r.PrincipalID, string(r.Status), micros(r.CreatedAt),
		microsPtr(r.StartedAt), microsPtr(r.CompletedAt), input, rawOrNull(r.Context), tooling, opts, summary,
		output, errBody, r.EventsURL, r.CorrelationID, r.Traceparent, r.IdempotencyKey, r.Attempt}, nil
}

// runResultArgs encodes the nullable output and error columns.
func runResultArgs(r store.Run) (output, errBody any, err error) {
	if r.Output != nil {
		if output, err = toJSON("output", r.Output); err != nil {
			return nil, nil, err
		}
	}
	if r.Error != nil {
		if errBody, err = toJSON("error", r.Error); err != nil {
			return nil, nil, err
		}
	}
	return output, errBody, nil
}

func scanRun(row interface{ Scan(...any) error }) (store.Run, error) {
	var r store.Run
	var status string
	var created, started, completed sql.NullInt64
	var input, rctx, tooling, opts, summary, output, errBody sql.NullString
	if err := row.Scan(&r.TenantID, &r.RunID, &r.AgentID, &r.PrincipalID, &status, &created, &started, &completed,
		&input, &rctx, &tooling, &opts, &summary, &output, &errBody, &r.EventsURL, &r.CorrelationID,
		&r.Traceparent, &r.IdempotencyKey, &r.Attempt); err != nil {
		return r, err
	}
	r.Status = store.RunStatus(status)
	r.CreatedAt, r.StartedAt, r.CompletedAt = fromMicros(created), fromMicrosPtr(started), fromMicrosPtr(completed)
	r.Context = rawFrom(rctx)
	for _, f := range []struct {
		s sql.NullString
		v any
	}{{input, &r.Input}, {tooling, &r.Tooling}, {opts, &r.RunOptions}, {summary, &r.Summary}} {
		if err := fromJSON(f.s, f.v); err != nil {
			return r, err
		}
	}
	if output.Valid {
		r.Output = new(store.Output)
		if err := fromJSON(output, r.Output); err != nil {
			return r, err
		}
	}
	if errBody.Valid {
		r.Error = new(store.ErrorBody)
		if err := fromJSON(errBody, r.Error); err != nil {
			return r, err
		}
	}
	return r, nil
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
	if err := required("tenant_id", p.TenantID); err != nil {
		return nil, "", err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = defaultRunLimit
	}
	limit = min(limit, maxRunLimit)
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
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].RunID
	}
	return out, next, nil
}

// ApplyRunChange commits c atomically: status compare-and-set, run fields,
// step upserts and events with gapless sequences (max+1 under the write lock).
func (db *DB) ApplyRunChange(ctx context.Context, c store.RunChange) ([]store.Event, error) {
	if err := required("tenant_id", c.TenantID, "run_id", c.RunID); err != nil {
		return nil, err
	}
	var runArgs []any
	if c.Run != nil {
		if !validStatus(c.Run.Status) {
			return nil, errs.Field("status", "unknown run status %q", c.Run.Status)
		}
		summary, err := toJSON("summary", c.Run.Summary)
		if err != nil {
			return nil, err
		}
		output, errBody, err := runResultArgs(*c.Run)
		if err != nil {
			return nil, err
		}
		runArgs = []any{string(c.Run.Status), microsPtr(utcPtr(c.Run.StartedAt)), microsPtr(utcPtr(c.Run.CompletedAt)),
			summary, output, errBody, c.Run.Attempt, c.TenantID, c.RunID}
	}
	for i, s := range c.Steps {
		if s.StepID == "" {
			return nil, errs.Field("steps["+itoa(i)+"].step_id", "is required")
		}
	}
	now := db.now()
	var out []store.Event
	err := db.WriteTx(ctx, func(tx *Tx) error {
		var status, agentID string
		var last int64
		var attempt int
		err := tx.QueryRowContext(ctx, `SELECT status, agent_id, attempt,
			(SELECT coalesce(max(sequence), 0) FROM events WHERE tenant_id = runs.tenant_id AND run_id = runs.run_id)
			FROM runs WHERE tenant_id = ? AND run_id = ?`, c.TenantID, c.RunID).Scan(&status, &agentID, &attempt, &last)
		if err != nil {
			return mapErr(err, "run "+c.RunID)
		}
		if c.ExpectAttempt > 0 && attempt != c.ExpectAttempt {
			return errs.E(errs.Conflict, "run %s was resumed by another executor (attempt %d, not %d)", c.RunID, attempt, c.ExpectAttempt).
				WithDetails(map[string]any{"attempt": attempt})
		}
		if len(c.FromStatuses) > 0 && !slices.Contains(c.FromStatuses, store.RunStatus(status)) {
			want := make([]string, len(c.FromStatuses))
			for i, s := range c.FromStatuses {
				want[i] = string(s)
			}
			return errs.E(errs.Conflict, "run %s is %s, not %s", c.RunID, status, strings.Join(want, " or ")).
				WithDetails(map[string]any{"status": status})
		}
		switch {
		case runArgs != nil && c.StatusOnly:
			if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = ?, completed_at = ?, output = ?, error = ?
				WHERE tenant_id = ? AND run_id = ?`, runArgs[0], runArgs[2], runArgs[4], runArgs[5], c.TenantID, c.RunID); err != nil {
				return mapErr(err, "run "+c.RunID)
			}
		case runArgs != nil:
			if _, err := tx.ExecContext(ctx, `UPDATE runs SET status = ?, started_at = ?, completed_at = ?, summary = ?,
				output = ?, error = ?, attempt = ? WHERE tenant_id = ? AND run_id = ?`, runArgs...); err != nil {
				return mapErr(err, "run "+c.RunID)
			}
		}
		for _, s := range c.Steps {
			s.TenantID, s.RunID = c.TenantID, c.RunID
			if _, err := tx.ExecContext(ctx, `INSERT INTO steps (tenant_id, run_id, step_id, idx, kind, name, status,
				tool_call_id, input, output, started_at, completed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
				ON CONFLICT (tenant_id, run_id, step_id) DO UPDATE SET idx = excluded.idx, kind = excluded.kind,
				name = excluded.name, status = excluded.status, tool_call_id = excluded.tool_call_id,
				input = excluded.input, output = excluded.output, started_at = excluded.started_at,
				completed_at = excluded.completed_at`,
				s.TenantID, s.RunID, s.StepID, s.Index, s.Kind, s.Name, s.Status, s.ToolCallID, rawOrNull(s.Input),
				rawOrNull(s.Output), micros(utc(s.StartedAt)), microsPtr(utcPtr(s.CompletedAt))); err != nil {
				return mapErr(err, "step "+s.StepID)
			}
		}
		out = make([]store.Event, 0, len(c.Events))
		for _, e := range c.Events {
			last++
			e.TenantID, e.RunID, e.Sequence = c.TenantID, c.RunID, last
			if e.AgentID == "" {
				e.AgentID = agentID
			}
			fillEvent(&e, now)
			if err := insertEvent(ctx, tx, e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
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
		s.Input, s.Output = rawFrom(input), rawFrom(output)
		s.StartedAt, s.CompletedAt = fromMicros(started), fromMicrosPtr(completed)
		out = append(out, s)
	}
	return out, mapErr(rows.Err(), "steps")
}

// ListUnfinishedRuns returns queued and running runs of every tenant, oldest
// first. It is the recovery scan at startup, the one run query not led by a
// tenant.
func (db *DB) ListUnfinishedRuns(ctx context.Context) ([]store.Run, error) {
	rows, err := db.query(ctx, `SELECT `+runCols+` FROM runs WHERE status IN ('queued', 'running')
		ORDER BY coalesce(created_at, 0), tenant_id, run_id`)
	if err != nil {
		return nil, mapErr(err, "runs")
	}
	defer rows.Close()
	var out []store.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, mapErr(err, "runs")
		}
		out = append(out, r)
	}
	return out, mapErr(rows.Err(), "runs")
}

// PurgeIdempotency deletes idempotency keys that expired at or before now.
func (db *DB) PurgeIdempotency(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE expires_at <= ?`, utc(now).UnixMicro())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// fillEvent sets EventID and Time when empty and normalizes Time.
func fillEvent(e *store.Event, now time.Time) {
	if e.EventID == "" {
		e.EventID = ids.New("evt_")
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = utc(e.Time)
	if len(e.Payload) == 0 {
		e.Payload = nil
	}
}

func insertEvent(ctx context.Context, tx *Tx, e store.Event) error {
	var stepID any
	if e.StepID != nil {
		stepID = *e.StepID
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO events (tenant_id, run_id, sequence, event_id, time, type, agent_id,
		step_id, traceparent, span_id, payload) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
		e.TenantID, e.RunID, e.Sequence, e.EventID, micros(e.Time), e.Type, e.AgentID, stepID,
		e.Trace.Traceparent, e.Trace.SpanID, rawOrNull(e.Payload))
	return mapErr(err, "event")
}

// ListEvents returns events with sequence > AfterSequence in order.
// ErrNotFound if the run is absent or in another tenant.
func (db *DB) ListEvents(ctx context.Context, p store.ListEventsParams) ([]store.Event, error) {
	var one int
	if err := db.queryRow(ctx, `SELECT 1 FROM runs WHERE tenant_id = ? AND run_id = ?`,
		p.TenantID, p.RunID).Scan(&one); err != nil {
		return nil, mapErr(err, "run "+p.RunID)
	}
	limit := p.Limit
	if limit <= 0 {
		limit = defaultEventLimit
	}
	limit = min(limit, maxEventLimit)
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
		e.Payload = rawFrom(payload)
		out = append(out, e)
	}
	return out, mapErr(rows.Err(), "events")
}
