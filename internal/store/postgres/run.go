package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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

// maxClaimAttempts bounds CreateRun's loop claiming an idempotency key whose
// row disappears (purged) between the conflicting insert and the read back.
const maxClaimAttempts = 5

func validStatus(s store.RunStatus) bool {
	switch s {
	case store.RunQueued, store.RunRunning, store.RunCompleted, store.RunFailed, store.RunCanceled:
		return true
	}
	return false
}

// CreateRun admits a run in one transaction: idempotency claim, run row,
// first event (sequence 1), a queue_entries row (only when the run is
// queued) and the audit record.
//
// Concurrent duplicates: the key is claimed with INSERT ... ON CONFLICT DO
// NOTHING, which waits for a concurrent claimer of the same key to finish;
// the losers then lock the winner's row and replay its run (or conflict on a
// different fingerprint). An expired key is taken over under that lock.
//
// Defaults: RunID ids.New("run_"), Status queued, CreatedAt now, FirstEvent
// type run.created with EventID/Time filled; FirstEvent's tenant, agent and
// run ids are taken from the run. The returned run is what GetRun returns.
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

	if p.ReplayOnly {
		return db.replayOnly(ctx, r, p, now)
	}
	var res store.CreateRunResult
	err = db.Tx(ctx, func(tx pgx.Tx) error {
		res = store.CreateRunResult{}
		if p.IdempotencyKey != "" {
			replay, err := claimKey(ctx, tx, r, p, now, ttl)
			if err != nil || replay != nil {
				if replay != nil {
					res = store.CreateRunResult{Run: *replay, Replayed: true}
				}
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO runs (`+runCols+`, last_sequence)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,1)`, args...); err != nil {
			return mapErr(err, "run "+r.RunID)
		}
		if err := insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		if r.Status == store.RunQueued {
			if _, err := tx.Exec(ctx, `INSERT INTO queue_entries (tenant_id, run_id, priority, enqueued_at)
				VALUES ($1,$2,$3,$4) ON CONFLICT (tenant_id, run_id) DO NOTHING`,
				r.TenantID, r.RunID, p.Priority, now); err != nil {
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

// replayOnly answers a CreateRun with ReplayOnly set, writing nothing: the
// run of a known, unexpired key (Replayed), a conflict for another
// fingerprint, ErrNotFound otherwise.
func (db *DB) replayOnly(ctx context.Context, r store.Run, p store.CreateRunParams, now time.Time) (store.CreateRunResult, error) {
	if p.IdempotencyKey == "" {
		return store.CreateRunResult{}, errs.E(errs.NotFound, "replay-only create without an idempotency key")
	}
	var fp, runID string
	var expires time.Time
	err := db.pool.QueryRow(ctx, `SELECT fingerprint, run_id, expires_at FROM idempotency_keys
		WHERE tenant_id = $1 AND principal_id = $2 AND agent_id = $3 AND idem_key = $4`,
		r.TenantID, r.PrincipalID, r.AgentID, p.IdempotencyKey).Scan(&fp, &runID, &expires)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !expires.After(now) {
		return store.CreateRunResult{}, errs.E(errs.NotFound, "idempotency key %q not found", p.IdempotencyKey)
	}
	if err != nil {
		return store.CreateRunResult{}, mapErr(err, "idempotency key")
	}
	if fp != p.Fingerprint {
		return store.CreateRunResult{}, errs.E(errs.Conflict, "Idempotency-Key %q was used with a different request body", p.IdempotencyKey).
			WithDetails(map[string]any{"run_id": runID})
	}
	orig, err := db.GetRun(ctx, r.TenantID, runID)
	if err != nil {
		return store.CreateRunResult{}, err
	}
	return store.CreateRunResult{Run: orig, Replayed: true}, nil
}

// claimKey claims p.IdempotencyKey for run r. It returns (nil, nil) when r
// may be created, the original run when the request is a replay, or a
// conflict when the key was used with another fingerprint.
func claimKey(ctx context.Context, tx pgx.Tx, r store.Run, p store.CreateRunParams, now time.Time, ttl time.Duration) (*store.Run, error) {
	key := []any{r.TenantID, r.PrincipalID, r.AgentID, p.IdempotencyKey}
	for range maxClaimAttempts {
		tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, principal_id, agent_id, idem_key,
			fingerprint, run_id, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
			ON CONFLICT (tenant_id, principal_id, agent_id, idem_key) DO NOTHING`,
			append(key, p.Fingerprint, r.RunID, now, now.Add(ttl))...)
		if err != nil {
			return nil, mapErr(err, "idempotency key")
		}
		if tag.RowsAffected() == 1 {
			return nil, nil
		}
		var fp, runID string
		var expires time.Time
		err = tx.QueryRow(ctx, `SELECT fingerprint, run_id, expires_at FROM idempotency_keys
			WHERE tenant_id = $1 AND principal_id = $2 AND agent_id = $3 AND idem_key = $4 FOR UPDATE`, key...).
			Scan(&fp, &runID, &expires)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // purged meanwhile: claim again
		}
		if err != nil {
			return nil, mapErr(err, "idempotency key")
		}
		if !expires.After(now) { // expired: take it over (the row is locked)
			_, err := tx.Exec(ctx, `UPDATE idempotency_keys SET fingerprint = $5, run_id = $6, created_at = $7,
				expires_at = $8 WHERE tenant_id = $1 AND principal_id = $2 AND agent_id = $3 AND idem_key = $4`,
				append(key, p.Fingerprint, r.RunID, now, now.Add(ttl))...)
			return nil, mapErr(err, "idempotency key")
		}
		if fp != p.Fingerprint {
			return nil, errs.E(errs.Conflict, "Idempotency-Key %q was used with a different request body", p.IdempotencyKey).
				WithDetails(map[string]any{"run_id": runID})
		}
		orig, err := scanRun(tx.QueryRow(ctx, `SELECT `+runCols+` FROM runs WHERE tenant_id = $1 AND run_id = $2`,
			r.TenantID, runID))
		if err != nil {
			return nil, mapErr(err, "run "+runID)
		}
		return &orig, nil
	}
	return nil, errs.E(errs.DependencyUnavailable, "Idempotency-Key %q is contended; retry", p.IdempotencyKey)
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
	return []any{r.TenantID, r.RunID, r.AgentID, r.PrincipalID, string(r.Status), utc(r.CreatedAt),
		tsPtr(r.StartedAt), tsPtr(r.CompletedAt), input, rawOrNull(r.Context), tooling, opts, summary,
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

func scanRun(row pgx.Row) (store.Run, error) {
	var r store.Run
	var status string
	var created time.Time
	var started, completed *time.Time
	var input, rctx, tooling, opts, summary, output, errBody []byte
	if err := row.Scan(&r.TenantID, &r.RunID, &r.AgentID, &r.PrincipalID, &status, &created, &started, &completed,
		&input, &rctx, &tooling, &opts, &summary, &output, &errBody, &r.EventsURL, &r.CorrelationID,
		&r.Traceparent, &r.IdempotencyKey, &r.Attempt); err != nil {
		return r, err
	}
	r.Status = store.RunStatus(status)
	r.CreatedAt, r.StartedAt, r.CompletedAt = created.UTC(), fromTSPtr(started), fromTSPtr(completed)
	r.Context = rawFrom(rctx)
	for _, f := range []struct {
		b []byte
		v any
	}{{input, &r.Input}, {tooling, &r.Tooling}, {opts, &r.RunOptions}, {summary, &r.Summary}} {
		if err := fromJSON(f.b, f.v); err != nil {
			return r, err
		}
	}
	if output != nil {
		r.Output = new(store.Output)
		if err := fromJSON(output, r.Output); err != nil {
			return r, err
		}
	}
	if errBody != nil {
		r.Error = new(store.ErrorBody)
		if err := fromJSON(errBody, r.Error); err != nil {
			return r, err
		}
	}
	return r, nil
}

func collectRuns(rows pgx.Rows) ([]store.Run, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Run, error) { return scanRun(r) })
}

// GetRun returns ErrNotFound if absent or in another tenant.
func (db *DB) GetRun(ctx context.Context, tenantID, runID string) (store.Run, error) {
	r, err := scanRun(db.pool.QueryRow(ctx, `SELECT `+runCols+` FROM runs WHERE tenant_id = $1 AND run_id = $2`,
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
	q := `SELECT ` + runCols + ` FROM runs WHERE tenant_id = $1`
	args := []any{p.TenantID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + itoa(len(args))
	}
	if p.AgentID != "" {
		q += ` AND agent_id = ` + arg(p.AgentID)
	}
	if p.Status != "" {
		q += ` AND status = ` + arg(p.Status)
	}
	if p.Cursor != "" {
		var created time.Time
		err := db.pool.QueryRow(ctx, `SELECT created_at FROM runs WHERE tenant_id = $1 AND run_id = $2`,
			p.TenantID, p.Cursor).Scan(&created)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, "", errs.Field("cursor", "unknown cursor %q", p.Cursor)
		}
		if err != nil {
			return nil, "", mapErr(err, "runs")
		}
		q += ` AND (created_at, run_id) < (` + arg(created) + `, ` + arg(p.Cursor) + `)`
	}
	q += ` ORDER BY created_at DESC, run_id DESC LIMIT ` + arg(limit+1)
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", mapErr(err, "runs")
	}
	out, err := collectRuns(rows)
	if err != nil {
		return nil, "", mapErr(err, "runs")
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].RunID
	}
	return out, next, nil
}

// ApplyRunChange commits c atomically: it locks the run row (FOR UPDATE),
// checks the attempt fence and the status compare-and-set, replaces run
// fields (only status, completed_at, output and error when StatusOnly),
// upserts steps and appends events with gapless sequences from
// runs.last_sequence.
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
		runArgs = []any{string(c.Run.Status), tsPtr(c.Run.StartedAt), tsPtr(c.Run.CompletedAt),
			summary, output, errBody, c.Run.Attempt, c.TenantID, c.RunID}
	}
	for i, s := range c.Steps {
		if s.StepID == "" {
			return nil, errs.Field("steps["+itoa(i)+"].step_id", "is required")
		}
	}
	now := db.now()
	var out []store.Event
	err := db.Tx(ctx, func(tx pgx.Tx) error {
		out = nil
		var status, agentID string
		var last int64
		var attempt int
		err := tx.QueryRow(ctx, `SELECT status, agent_id, attempt, last_sequence FROM runs
			WHERE tenant_id = $1 AND run_id = $2 FOR UPDATE`, c.TenantID, c.RunID).Scan(&status, &agentID, &attempt, &last)
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
			if _, err := tx.Exec(ctx, `UPDATE runs SET status = $1, completed_at = $2, output = $3, error = $4
				WHERE tenant_id = $5 AND run_id = $6`, runArgs[0], runArgs[2], runArgs[4], runArgs[5], c.TenantID, c.RunID); err != nil {
				return mapErr(err, "run "+c.RunID)
			}
		case runArgs != nil:
			if _, err := tx.Exec(ctx, `UPDATE runs SET status = $1, started_at = $2, completed_at = $3, summary = $4,
				output = $5, error = $6, attempt = $7 WHERE tenant_id = $8 AND run_id = $9`, runArgs...); err != nil {
				return mapErr(err, "run "+c.RunID)
			}
		}
		for _, s := range c.Steps {
			if _, err := tx.Exec(ctx, `INSERT INTO steps (tenant_id, run_id, step_id, idx, kind, name, status,
				tool_call_id, input, output, started_at, completed_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
				ON CONFLICT (tenant_id, run_id, step_id) DO UPDATE SET idx = excluded.idx, kind = excluded.kind,
				name = excluded.name, status = excluded.status, tool_call_id = excluded.tool_call_id,
				input = excluded.input, output = excluded.output, started_at = excluded.started_at,
				completed_at = excluded.completed_at`,
				c.TenantID, c.RunID, s.StepID, s.Index, s.Kind, s.Name, s.Status, s.ToolCallID, rawOrNull(s.Input),
				rawOrNull(s.Output), ts(s.StartedAt), tsPtr(s.CompletedAt)); err != nil {
				return mapErr(err, "step "+s.StepID)
			}
		}
		if len(c.Events) == 0 {
			return nil
		}
		evs := make([]store.Event, 0, len(c.Events))
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
			evs = append(evs, e)
		}
		if _, err := tx.Exec(ctx, `UPDATE runs SET last_sequence = $1 WHERE tenant_id = $2 AND run_id = $3`,
			last, c.TenantID, c.RunID); err != nil {
			return mapErr(err, "run "+c.RunID)
		}
		out = evs
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []store.Event{}
	}
	return out, nil
}

// ListSteps returns a run's steps ordered by Index (then step id).
func (db *DB) ListSteps(ctx context.Context, tenantID, runID string) ([]store.Step, error) {
	rows, err := db.pool.Query(ctx, `SELECT tenant_id, run_id, step_id, idx, kind, name, status, tool_call_id,
		input, output, started_at, completed_at FROM steps WHERE tenant_id = $1 AND run_id = $2 ORDER BY idx, step_id`,
		tenantID, runID)
	if err != nil {
		return nil, mapErr(err, "steps")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Step, error) {
		var s store.Step
		var input, output []byte
		var started, completed *time.Time
		if err := row.Scan(&s.TenantID, &s.RunID, &s.StepID, &s.Index, &s.Kind, &s.Name, &s.Status, &s.ToolCallID,
			&input, &output, &started, &completed); err != nil {
			return s, err
		}
		s.Input, s.Output = rawFrom(input), rawFrom(output)
		s.StartedAt, s.CompletedAt = fromTS(started), fromTSPtr(completed)
		return s, nil
	})
	return out, mapErr(err, "steps")
}

// ListUnfinishedRuns returns queued and running runs of every tenant, oldest
// first. It is the recovery scan at startup, the one run query not led by a
// tenant.
func (db *DB) ListUnfinishedRuns(ctx context.Context) ([]store.Run, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+runCols+` FROM runs WHERE status IN ('queued', 'running')
		ORDER BY created_at, tenant_id, run_id`)
	if err != nil {
		return nil, mapErr(err, "runs")
	}
	out, err := collectRuns(rows)
	return out, mapErr(err, "runs")
}

// PurgeIdempotency deletes idempotency keys that expired at or before now.
func (db *DB) PurgeIdempotency(ctx context.Context, now time.Time) (int, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE expires_at <= $1`, utc(now))
	if err != nil {
		return 0, mapErr(err, "idempotency keys")
	}
	return int(tag.RowsAffected()), nil
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

func insertEvent(ctx context.Context, tx pgx.Tx, e store.Event) error {
	_, err := tx.Exec(ctx, `INSERT INTO events (tenant_id, run_id, sequence, event_id, time, type, agent_id,
		step_id, traceparent, span_id, payload) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
		e.TenantID, e.RunID, e.Sequence, e.EventID, ts(e.Time), e.Type, e.AgentID, e.StepID,
		e.Trace.Traceparent, e.Trace.SpanID, rawOrNull(e.Payload))
	return mapErr(err, "event")
}

// ListEvents returns events with sequence > AfterSequence in order.
// ErrNotFound if the run is absent or in another tenant.
func (db *DB) ListEvents(ctx context.Context, p store.ListEventsParams) ([]store.Event, error) {
	var one int
	if err := db.pool.QueryRow(ctx, `SELECT 1 FROM runs WHERE tenant_id = $1 AND run_id = $2`,
		p.TenantID, p.RunID).Scan(&one); err != nil {
		return nil, mapErr(err, "run "+p.RunID)
	}
	limit := p.Limit
	if limit <= 0 {
		limit = defaultEventLimit
	}
	limit = min(limit, maxEventLimit)
	rows, err := db.pool.Query(ctx, `SELECT tenant_id, run_id, sequence, event_id, time, type, agent_id, step_id,
		traceparent, span_id, payload FROM events WHERE tenant_id = $1 AND run_id = $2 AND sequence > $3
		ORDER BY sequence LIMIT $4`, p.TenantID, p.RunID, p.AfterSequence, limit)
	if err != nil {
		return nil, mapErr(err, "events")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Event, error) {
		var e store.Event
		var t *time.Time
		var payload []byte
		if err := row.Scan(&e.TenantID, &e.RunID, &e.Sequence, &e.EventID, &t, &e.Type, &e.AgentID, &e.StepID,
			&e.Trace.Traceparent, &e.Trace.SpanID, &payload); err != nil {
			return e, err
		}
		e.Time = fromTS(t)
		e.Payload = rawFrom(payload)
		return e, nil
	})
	return out, mapErr(err, "events")
}
