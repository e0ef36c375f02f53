package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/storeutil"
)

// DefaultIdempotencyTTL is used when CreateRunParams.IdempotencyTTL is 0.
const DefaultIdempotencyTTL = storeutil.DefaultIdempotencyTTL

// maxClaimAttempts bounds CreateRun's loop claiming an idempotency key whose
// row disappears (purged) between the conflicting insert and the read back.
const maxClaimAttempts = 5

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
	nr, err := storeutil.PrepareRun(p, db.now)
	if err != nil {
		return store.CreateRunResult{}, err
	}
	r, ev, ttl, now := nr.Run, nr.FirstEvent, nr.TTL, nr.Now
	args, err := runArgs(r)
	if err != nil {
		return store.CreateRunResult{}, err
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
		if nr.Audit != nil {
			if _, err := db.appendAuditTx(ctx, tx, []storeutil.AuditRow{*nr.Audit}); err != nil {
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
		return store.CreateRunResult{}, storeutil.IdempotencyConflict(p.IdempotencyKey, runID)
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
			return nil, storeutil.IdempotencyConflict(p.IdempotencyKey, runID)
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

const runCols = `tenant_id, run_id, agent_id, principal_id, status, created_at, started_at, completed_at, input, context,
	tooling, run_options, summary, output, error, events_url, correlation_id, traceparent, idempotency_key, attempt`

func runArgs(r store.Run) ([]any, error) {
	c, err := storeutil.EncodeRun(r)
	if err != nil {
		return nil, err
	}
	return []any{r.TenantID, r.RunID, r.AgentID, r.PrincipalID, string(r.Status), storeutil.UTC(r.CreatedAt),
		tsPtr(r.StartedAt), tsPtr(r.CompletedAt), c.Input, storeutil.RawOrNull(r.Context), c.Tooling, c.RunOptions,
		c.Summary, c.Output, c.Error, r.EventsURL, r.CorrelationID, r.Traceparent, r.IdempotencyKey, r.Attempt}, nil
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
	r.Context = storeutil.RawFrom(rctx)
	return r, storeutil.DecodeRun(&r, input, tooling, opts, summary, output, errBody)
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
	if err := p.Validate(); err != nil {
		return nil, "", err
	}
	limit := storeutil.Limit(p.Limit, storeutil.DefaultRunLimit, storeutil.MaxRunLimit)
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
	out, next := storeutil.Page(out, limit)
	return out, next, nil
}

// ApplyRunChange commits c atomically: it locks the run row (FOR UPDATE),
// checks the attempt fence and the status compare-and-set, replaces run
// fields (only status, completed_at, output and error when StatusOnly),
// upserts steps and appends events with gapless sequences from
// runs.last_sequence.
func (db *DB) ApplyRunChange(ctx context.Context, c store.RunChange) ([]store.Event, error) {
	cols, err := storeutil.PrepareRunChange(c)
	if err != nil {
		return nil, err
	}
	var runArgs []any
	if cols != nil {
		runArgs = []any{string(c.Run.Status), tsPtr(c.Run.StartedAt), tsPtr(c.Run.CompletedAt),
			cols.Summary, cols.Output, cols.Error, c.Run.Attempt, c.TenantID, c.RunID}
	}
	now := db.now()
	var out []store.Event
	err = db.Tx(ctx, func(tx pgx.Tx) error {
		out = nil
		var status, agentID string
		var last int64
		var attempt int
		err := tx.QueryRow(ctx, `SELECT status, agent_id, attempt, last_sequence FROM runs
			WHERE tenant_id = $1 AND run_id = $2 FOR UPDATE`, c.TenantID, c.RunID).Scan(&status, &agentID, &attempt, &last)
		if err != nil {
			return mapErr(err, "run "+c.RunID)
		}
		if err := storeutil.CheckRunChange(c, status, attempt); err != nil {
			return err
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
				c.TenantID, c.RunID, s.StepID, s.Index, s.Kind, s.Name, s.Status, s.ToolCallID, storeutil.RawOrNull(s.Input),
				storeutil.RawOrNull(s.Output), ts(s.StartedAt), tsPtr(s.CompletedAt)); err != nil {
				return mapErr(err, "step "+s.StepID)
			}
		}
		if len(c.Events) == 0 {
			return nil
		}
		evs := storeutil.SequenceEvents(c, agentID, last, now)
		for _, e := range evs {
			if err := insertEvent(ctx, tx, e); err != nil {
				return err
			}
		}
		last = evs[len(evs)-1].Sequence
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
		s.Input, s.Output = storeutil.RawFrom(input), storeutil.RawFrom(output)
		s.StartedAt, s.CompletedAt = fromTS(started), fromTSPtr(completed)
		return s, nil
	})
	return out, mapErr(err, "steps")
}

// PurgeIdempotency deletes idempotency keys that expired at or before now.
func (db *DB) PurgeIdempotency(ctx context.Context, now time.Time) (int, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE expires_at <= $1`, storeutil.UTC(now))
	if err != nil {
		return 0, mapErr(err, "idempotency keys")
	}
	return int(tag.RowsAffected()), nil
}

func insertEvent(ctx context.Context, tx pgx.Tx, e store.Event) error {
	_, err := tx.Exec(ctx, `INSERT INTO events (tenant_id, run_id, sequence, event_id, time, type, agent_id,
		step_id, traceparent, span_id, payload) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
		e.TenantID, e.RunID, e.Sequence, e.EventID, ts(e.Time), e.Type, e.AgentID, e.StepID,
		e.Trace.Traceparent, e.Trace.SpanID, storeutil.RawOrNull(e.Payload))
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
	limit := storeutil.Limit(p.Limit, storeutil.DefaultEventLimit, storeutil.MaxEventLimit)
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
		e.Payload = storeutil.RawFrom(payload)
		return e, nil
	})
	return out, mapErr(err, "events")
}
