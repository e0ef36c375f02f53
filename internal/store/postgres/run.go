package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// DefaultIdempotencyTTL is used when CreateRunParams.IdempotencyTTL is 0.
const DefaultIdempotencyTTL = sqlstore.DefaultIdempotencyTTL

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
	nr, err := sqlstore.PrepareRun(p, db.now)
	if err != nil {
		return store.CreateRunResult{}, err
	}
	if p.ReplayOnly {
		return db.replayOnly(ctx, nr.Run, p, nr.Now)
	}
	var res store.CreateRunResult
	err = db.Tx(ctx, func(tx pgx.Tx) error {
		replay, err := claimKey(ctx, tx, nr.Run, p, nr.Now, nr.TTL)
		switch {
		case err != nil:
			return err
		case replay != nil:
			res = store.CreateRunResult{Run: *replay, Replayed: true}
			return nil
		}
		res, err = sqlstore.Admit(ctx, stmts{tx}, nr, p.Priority)
		return err
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
		return store.CreateRunResult{}, sqlstore.IdempotencyConflict(p.IdempotencyKey, runID)
	}
	orig, err := db.GetRun(ctx, r.TenantID, runID)
	if err != nil {
		return store.CreateRunResult{}, err
	}
	return store.CreateRunResult{Run: orig, Replayed: true}, nil
}

// claimKey claims p.IdempotencyKey, if any, for run r. It returns (nil,
// nil) when r may be created, the original run when the request is a
// replay, or a conflict when the key was used with another fingerprint.
func claimKey(ctx context.Context, tx pgx.Tx, r store.Run, p store.CreateRunParams, now time.Time, ttl time.Duration) (*store.Run, error) {
	if p.IdempotencyKey == "" {
		return nil, nil
	}
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
			return nil, sqlstore.IdempotencyConflict(p.IdempotencyKey, runID)
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
	tooling, run_options, summary, output, error, events_url, correlation_id, traceparent, idempotency_key, attempt,
	thread_id, multitask_strategy`

func scanRun(row pgx.Row) (store.Run, error) {
	var r store.Run
	var status string
	var created time.Time
	var started, completed *time.Time
	var input, rctx, tooling, opts, summary, output, errBody []byte
	if err := row.Scan(&r.TenantID, &r.RunID, &r.AgentID, &r.PrincipalID, &status, &created, &started, &completed,
		&input, &rctx, &tooling, &opts, &summary, &output, &errBody, &r.EventsURL, &r.CorrelationID,
		&r.Traceparent, &r.IdempotencyKey, &r.Attempt, &r.ThreadID, &r.MultitaskStrategy); err != nil {
		return r, err
	}
	r.Status = store.RunStatus(status)
	r.CreatedAt, r.StartedAt, r.CompletedAt = created.UTC(), fromTSPtr(started), fromTSPtr(completed)
	r.Context = sqlstore.RawFrom(rctx)
	return r, sqlstore.DecodeRun(&r, input, tooling, opts, summary, output, errBody)
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
	limit := sqlstore.Limit(p.Limit, sqlstore.DefaultRunLimit, sqlstore.MaxRunLimit)
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
	if p.ThreadID != "" {
		// thread_id <> '' lets the planner use the partial index runs_thread.
		q += ` AND thread_id = ` + arg(p.ThreadID) + ` AND thread_id <> ''`
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
	out, next := sqlstore.Page(out, limit)
	return out, next, nil
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
		s.Input, s.Output = sqlstore.RawFrom(input), sqlstore.RawFrom(output)
		s.StartedAt, s.CompletedAt = fromTS(started), fromTSPtr(completed)
		return s, nil
	})
	return out, mapErr(err, "steps")
}

// PurgeIdempotency deletes idempotency keys that expired at or before now.
func (db *DB) PurgeIdempotency(ctx context.Context, now time.Time) (int, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE expires_at <= $1`, sqlstore.UTC(now))
	if err != nil {
		return 0, mapErr(err, "idempotency keys")
	}
	return int(tag.RowsAffected()), nil
}

// ListEvents returns events with sequence > AfterSequence in order.
// ErrNotFound if the run is absent or in another tenant.
func (db *DB) ListEvents(ctx context.Context, p store.ListEventsParams) ([]store.Event, error) {
	var one int
	if err := db.pool.QueryRow(ctx, `SELECT 1 FROM runs WHERE tenant_id = $1 AND run_id = $2`,
		p.TenantID, p.RunID).Scan(&one); err != nil {
		return nil, mapErr(err, "run "+p.RunID)
	}
	limit := sqlstore.Limit(p.Limit, sqlstore.DefaultEventLimit, sqlstore.MaxEventLimit)
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
		e.Payload = sqlstore.RawFrom(payload)
		return e, nil
	})
	return out, mapErr(err, "events")
}
