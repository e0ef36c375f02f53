package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// CreateThread inserts t. ErrConflict if the id exists.
func (db *DB) CreateThread(ctx context.Context, t store.Thread) error {
	meta, err := sqlstore.EncodeThread(t)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO threads (tenant_id, thread_id, metadata, active_run_id, created_at, updated_at)
		VALUES ($1,$2,$3,'',$4,$5)`, t.TenantID, t.ThreadID, meta, ts(t.CreatedAt), ts(t.UpdatedAt))
	return mapErr(err, "thread "+t.ThreadID)
}

const threadCols = `tenant_id, thread_id, metadata, active_run_id, created_at, updated_at`

func scanThread(row pgx.Row) (store.Thread, error) {
	var t store.Thread
	var meta []byte
	var created, updated time.Time
	if err := row.Scan(&t.TenantID, &t.ThreadID, &meta, &t.ActiveRunID, &created, &updated); err != nil {
		return t, err
	}
	t.CreatedAt, t.UpdatedAt = created.UTC(), updated.UTC()
	return t, sqlstore.DecodeThread(&t, meta)
}

// GetThread returns ErrNotFound if absent or in another tenant.
func (db *DB) GetThread(ctx context.Context, tenantID, threadID string) (store.Thread, error) {
	t, err := scanThread(db.pool.QueryRow(ctx, `SELECT `+threadCols+` FROM threads WHERE tenant_id = $1 AND thread_id = $2`,
		tenantID, threadID))
	return t, mapErr(err, "thread "+threadID)
}

// ListThreads lists a tenant's threads newest first (created_at, then
// thread_id, descending); the metadata filter is a jsonb containment. An
// unknown cursor is an invalid_request naming "cursor".
func (db *DB) ListThreads(ctx context.Context, p store.ListThreadsParams) ([]store.Thread, string, error) {
	if err := sqlstore.ValidateListThreads(p); err != nil {
		return nil, "", err
	}
	limit := sqlstore.Limit(p.Limit, sqlstore.DefaultRunLimit, sqlstore.MaxRunLimit)
	q := `SELECT ` + threadCols + ` FROM threads WHERE tenant_id = $1`
	args := []any{p.TenantID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(p.Metadata) > 0 {
		filter, err := sqlstore.ToJSON("metadata", p.Metadata)
		if err != nil {
			return nil, "", err
		}
		q += ` AND metadata @> ` + arg(filter) + `::jsonb`
	}
	if p.Cursor != "" {
		var created time.Time
		err := db.pool.QueryRow(ctx, `SELECT created_at FROM threads WHERE tenant_id = $1 AND thread_id = $2`,
			p.TenantID, p.Cursor).Scan(&created)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, "", errs.Field("cursor", "unknown cursor %q", p.Cursor)
		} else if err != nil {
			return nil, "", mapErr(err, "threads")
		}
		q += ` AND (created_at, thread_id) < (` + arg(created) + `, ` + arg(p.Cursor) + `)`
	}
	q += ` ORDER BY created_at DESC, thread_id DESC LIMIT ` + arg(limit+1)
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", mapErr(err, "threads")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Thread, error) { return scanThread(r) })
	if err != nil {
		return nil, "", mapErr(err, "threads")
	}
	out, next := sqlstore.PageThreads(out, limit)
	return out, next, nil
}

// DeleteThread removes the thread and its messages with the audit record,
// in one transaction (refused while a run of it is active or waiting).
func (db *DB) DeleteThread(ctx context.Context, p store.DeleteThreadParams) error {
	audit, err := sqlstore.PrepareDeleteThread(p, db.now)
	if err != nil {
		return err
	}
	return db.begin(ctx, func(tx sqlstore.Tx) error { return sqlstore.DeleteThread(ctx, tx, p, audit) })
}

const messageCols = `tenant_id, thread_id, seq, message_id, run_id, role, content, tool_calls, tool_call_id, created_at`

// ListThreadMessages returns a thread's messages in seq order.
func (db *DB) ListThreadMessages(ctx context.Context, p store.ListThreadMessagesParams) ([]store.ThreadMessage, error) {
	var one int
	if err := db.pool.QueryRow(ctx, `SELECT 1 FROM threads WHERE tenant_id = $1 AND thread_id = $2`,
		p.TenantID, p.ThreadID).Scan(&one); err != nil {
		return nil, mapErr(err, "thread "+p.ThreadID)
	}
	var rows pgx.Rows
	var err error
	if p.Last > 0 {
		rows, err = db.pool.Query(ctx, `SELECT `+messageCols+` FROM (SELECT `+messageCols+` FROM thread_messages
			WHERE tenant_id = $1 AND thread_id = $2 ORDER BY seq DESC LIMIT $3) m ORDER BY seq`, p.TenantID, p.ThreadID, p.Last)
	} else {
		rows, err = db.pool.Query(ctx, `SELECT `+messageCols+` FROM thread_messages WHERE tenant_id = $1 AND thread_id = $2
			AND seq > $3 ORDER BY seq LIMIT $4`, p.TenantID, p.ThreadID, p.AfterSeq, sqlstore.MessageLimit(p.Limit))
	}
	if err != nil {
		return nil, mapErr(err, "thread messages")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ThreadMessage, error) {
		var m store.ThreadMessage
		var calls []byte
		var created time.Time
		err := r.Scan(&m.TenantID, &m.ThreadID, &m.Seq, &m.MessageID, &m.RunID, &m.Role, &m.Content, &calls,
			&m.ToolCallID, &created)
		m.ToolCalls, m.CreatedAt = sqlstore.RawFrom(calls), created.UTC()
		return m, err
	})
	return out, mapErr(err, "thread messages")
}

// The ThreadTx statements. LockThread takes the thread's row lock (FOR
// UPDATE): admissions on one thread, and the endings of its runs, queue
// up behind it on every replica.

func (s stmts) RunThread(ctx context.Context, tenantID, runID string) (string, error) {
	var id string
	err := s.tx.QueryRow(ctx, `SELECT thread_id FROM runs WHERE tenant_id = $1 AND run_id = $2`, tenantID, runID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return id, mapErr(err, "run "+runID)
}

func (s stmts) LockThread(ctx context.Context, tenantID, threadID string) (string, error) {
	var active string
	err := s.tx.QueryRow(ctx, `SELECT active_run_id FROM threads WHERE tenant_id = $1 AND thread_id = $2 FOR UPDATE`,
		tenantID, threadID).Scan(&active)
	return active, mapErr(err, "thread "+threadID)
}

func (s stmts) SetActiveRun(ctx context.Context, tenantID, threadID, runID string, at time.Time) error {
	_, err := s.tx.Exec(ctx, `UPDATE threads SET active_run_id = $3, updated_at = $4 WHERE tenant_id = $1 AND thread_id = $2`,
		tenantID, threadID, runID, ts(at))
	return mapErr(err, "thread "+threadID)
}

func (s stmts) AddWaiting(ctx context.Context, tenantID, threadID, runID string, priority int, at time.Time) error {
	_, err := s.tx.Exec(ctx, `INSERT INTO thread_waiting (tenant_id, thread_id, run_id, priority, enqueued_at)
		VALUES ($1,$2,$3,$4,$5)`, tenantID, threadID, runID, priority, ts(at))
	return mapErr(err, "thread "+threadID)
}

func (s stmts) FirstWaiting(ctx context.Context, tenantID, threadID string) (string, int, error) {
	var runID string
	var priority int
	err := s.tx.QueryRow(ctx, `SELECT run_id, priority FROM thread_waiting WHERE tenant_id = $1 AND thread_id = $2
		ORDER BY enqueued_at, run_id LIMIT 1`, tenantID, threadID).Scan(&runID, &priority)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, nil
	}
	return runID, priority, mapErr(err, "thread "+threadID)
}

func (s stmts) RemoveWaiting(ctx context.Context, tenantID, threadID, runID string) error {
	_, err := s.tx.Exec(ctx, `DELETE FROM thread_waiting WHERE tenant_id = $1 AND thread_id = $2 AND run_id = $3`,
		tenantID, threadID, runID)
	return mapErr(err, "thread "+threadID)
}

func (s stmts) RunTurn(ctx context.Context, tenantID, runID string) (store.RunInput, bool, []store.Step, error) {
	var in store.RunInput
	var input []byte
	var started *time.Time
	if err := s.tx.QueryRow(ctx, `SELECT input, started_at FROM runs WHERE tenant_id = $1 AND run_id = $2`,
		tenantID, runID).Scan(&input, &started); err != nil {
		return in, false, nil, mapErr(err, "run "+runID)
	}
	if err := sqlstore.FromJSON(input, &in); err != nil {
		return in, false, nil, err
	}
	rows, err := s.tx.Query(ctx, `SELECT step_id, idx, kind, status, input, output FROM steps
		WHERE tenant_id = $1 AND run_id = $2 ORDER BY idx, step_id`, tenantID, runID)
	if err != nil {
		return in, false, nil, mapErr(err, "steps")
	}
	steps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Step, error) {
		var st store.Step
		var sin, sout []byte
		err := r.Scan(&st.StepID, &st.Index, &st.Kind, &st.Status, &sin, &sout)
		st.Input, st.Output = sqlstore.RawFrom(sin), sqlstore.RawFrom(sout)
		return st, err
	})
	return in, started != nil, steps, mapErr(err, "steps")
}

func (s stmts) LastMessageSeq(ctx context.Context, tenantID, threadID string) (int64, error) {
	var seq int64
	err := s.tx.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM thread_messages WHERE tenant_id = $1 AND thread_id = $2`,
		tenantID, threadID).Scan(&seq)
	return seq, mapErr(err, "thread "+threadID)
}

func (s stmts) InsertMessage(ctx context.Context, m store.ThreadMessage) error {
	_, err := s.tx.Exec(ctx, `INSERT INTO thread_messages (tenant_id, thread_id, seq, message_id, run_id, role,
		content, tool_calls, tool_call_id, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`, m.TenantID, m.ThreadID,
		m.Seq, m.MessageID, m.RunID, m.Role, m.Content, sqlstore.RawOrNull(m.ToolCalls), m.ToolCallID, ts(m.CreatedAt))
	return mapErr(err, "thread message "+strconv.FormatInt(m.Seq, 10))
}

func (s stmts) HasWaiting(ctx context.Context, tenantID, threadID string) (bool, error) {
	var waiting bool
	err := s.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM thread_waiting WHERE tenant_id = $1 AND thread_id = $2)`,
		tenantID, threadID).Scan(&waiting)
	return waiting, mapErr(err, "thread "+threadID)
}

func (s stmts) DeleteThreadRows(ctx context.Context, tenantID, threadID string) error {
	for _, q := range []string{`DELETE FROM thread_messages WHERE tenant_id = $1 AND thread_id = $2`,
		`DELETE FROM thread_waiting WHERE tenant_id = $1 AND thread_id = $2`,
		`DELETE FROM threads WHERE tenant_id = $1 AND thread_id = $2`} {
		if _, err := s.tx.Exec(ctx, q, tenantID, threadID); err != nil {
			return mapErr(err, "thread "+threadID)
		}
	}
	return nil
}
