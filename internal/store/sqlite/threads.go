package sqlite

import (
	"context"
	"database/sql"
	"strconv"
	"time"

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
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO threads (tenant_id, thread_id, metadata, active_run_id, created_at, updated_at)
			VALUES (?,?,?,'',?,?)`, t.TenantID, t.ThreadID, meta, micros(t.CreatedAt), micros(t.UpdatedAt))
		return mapErr(err, "thread "+t.ThreadID)
	})
}

const threadCols = `tenant_id, thread_id, metadata, active_run_id, created_at, updated_at`

func scanThread(row interface{ Scan(...any) error }) (store.Thread, error) {
	var t store.Thread
	var meta string
	var created, updated sql.NullInt64
	if err := row.Scan(&t.TenantID, &t.ThreadID, &meta, &t.ActiveRunID, &created, &updated); err != nil {
		return t, err
	}
	t.CreatedAt, t.UpdatedAt = fromMicros(created), fromMicros(updated)
	return t, sqlstore.DecodeThread(&t, []byte(meta))
}

// GetThread returns ErrNotFound if absent or in another tenant.
func (db *DB) GetThread(ctx context.Context, tenantID, threadID string) (store.Thread, error) {
	t, err := scanThread(db.queryRow(ctx, `SELECT `+threadCols+` FROM threads WHERE tenant_id = ? AND thread_id = ?`,
		tenantID, threadID))
	return t, mapErr(err, "thread "+threadID)
}

// ListThreads lists a tenant's threads newest first (created_at, then
// thread_id, descending); metadata filters match values exactly. An
// unknown cursor is an invalid_request naming "cursor".
func (db *DB) ListThreads(ctx context.Context, p store.ListThreadsParams) ([]store.Thread, string, error) {
	if err := sqlstore.ValidateListThreads(p); err != nil {
		return nil, "", err
	}
	limit := sqlstore.Limit(p.Limit, sqlstore.DefaultRunLimit, sqlstore.MaxRunLimit)
	q := `SELECT ` + threadCols + ` FROM threads WHERE tenant_id = ?`
	args := []any{p.TenantID}
	for _, k := range sqlstore.SortedKeys(p.Metadata) {
		// Keys are validated (letters, digits, _ . -), so quoting them in
		// the JSON path is safe.
		q += ` AND json_extract(metadata, '$."` + k + `"') = ?`
		args = append(args, p.Metadata[k])
	}
	if p.Cursor != "" {
		var created int64
		err := db.queryRow(ctx, `SELECT created_at FROM threads WHERE tenant_id = ? AND thread_id = ?`,
			p.TenantID, p.Cursor).Scan(&created)
		if err == sql.ErrNoRows {
			return nil, "", errs.Field("cursor", "unknown cursor %q", p.Cursor)
		} else if err != nil {
			return nil, "", mapErr(err, "threads")
		}
		q += ` AND (created_at < ? OR (created_at = ? AND thread_id < ?))`
		args = append(args, created, created, p.Cursor)
	}
	q += ` ORDER BY created_at DESC, thread_id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, "", mapErr(err, "threads")
	}
	defer rows.Close()
	var out []store.Thread
	for rows.Next() {
		t, err := scanThread(rows)
		if err != nil {
			return nil, "", mapErr(err, "threads")
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, "", mapErr(err, "threads")
	}
	out, next := sqlstore.PageThreads(out, limit)
	return out, next, nil
}

// DeleteThread removes the thread, its messages and its line of waiting
// runs (there is none: a thread with an active run is not deleted), with
// the audit record, in one transaction.
func (db *DB) DeleteThread(ctx context.Context, p store.DeleteThreadParams) error {
	audit, err := sqlstore.PrepareDeleteThread(p, db.now)
	if err != nil {
		return err
	}
	return db.begin(ctx, func(tx sqlstore.Tx) error { return sqlstore.DeleteThread(ctx, tx, p, audit) })
}

// ListThreadMessages returns a thread's messages in seq order.
func (db *DB) ListThreadMessages(ctx context.Context, p store.ListThreadMessagesParams) ([]store.ThreadMessage, error) {
	var one int
	if err := db.queryRow(ctx, `SELECT 1 FROM threads WHERE tenant_id = ? AND thread_id = ?`,
		p.TenantID, p.ThreadID).Scan(&one); err != nil {
		return nil, mapErr(err, "thread "+p.ThreadID)
	}
	const cols = `tenant_id, thread_id, seq, message_id, run_id, role, content, tool_calls, tool_call_id, created_at`
	var rows *sql.Rows
	var err error
	if p.Last > 0 {
		rows, err = db.query(ctx, `SELECT `+cols+` FROM (SELECT `+cols+` FROM thread_messages
			WHERE tenant_id = ? AND thread_id = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`, p.TenantID, p.ThreadID, p.Last)
	} else {
		rows, err = db.query(ctx, `SELECT `+cols+` FROM thread_messages WHERE tenant_id = ? AND thread_id = ? AND seq > ?
			ORDER BY seq LIMIT ?`, p.TenantID, p.ThreadID, p.AfterSeq, sqlstore.MessageLimit(p.Limit))
	}
	if err != nil {
		return nil, mapErr(err, "thread messages")
	}
	defer rows.Close()
	var out []store.ThreadMessage
	for rows.Next() {
		var m store.ThreadMessage
		var calls sql.NullString
		var created sql.NullInt64
		if err := rows.Scan(&m.TenantID, &m.ThreadID, &m.Seq, &m.MessageID, &m.RunID, &m.Role, &m.Content, &calls,
			&m.ToolCallID, &created); err != nil {
			return nil, mapErr(err, "thread messages")
		}
		m.ToolCalls, m.CreatedAt = sqlstore.RawFrom(nullBytes(calls)), fromMicros(created)
		out = append(out, m)
	}
	return out, mapErr(rows.Err(), "thread messages")
}

// The ThreadTx statements. Every write transaction holds SQLite's one
// write lock, so LockThread only reads.

func (s stmts) RunThread(ctx context.Context, tenantID, runID string) (string, error) {
	var id string
	err := s.tx.QueryRowContext(ctx, `SELECT thread_id FROM runs WHERE tenant_id = ? AND run_id = ?`, tenantID, runID).Scan(&id)
	if err == sql.ErrNoRows {
		return "", nil
	}
	return id, mapErr(err, "run "+runID)
}

func (s stmts) LockThread(ctx context.Context, tenantID, threadID string) (string, error) {
	var active string
	err := s.tx.QueryRowContext(ctx, `SELECT active_run_id FROM threads WHERE tenant_id = ? AND thread_id = ?`,
		tenantID, threadID).Scan(&active)
	return active, mapErr(err, "thread "+threadID)
}

func (s stmts) SetActiveRun(ctx context.Context, tenantID, threadID, runID string, at time.Time) error {
	_, err := s.tx.ExecContext(ctx, `UPDATE threads SET active_run_id = ?, updated_at = ? WHERE tenant_id = ? AND thread_id = ?`,
		runID, at.UnixMicro(), tenantID, threadID)
	return mapErr(err, "thread "+threadID)
}

func (s stmts) AddWaiting(ctx context.Context, tenantID, threadID, runID string, priority int, at time.Time) error {
	_, err := s.tx.ExecContext(ctx, `INSERT INTO thread_waiting (tenant_id, thread_id, run_id, priority, enqueued_at)
		VALUES (?,?,?,?,?)`, tenantID, threadID, runID, priority, at.UnixMicro())
	return mapErr(err, "thread "+threadID)
}

func (s stmts) FirstWaiting(ctx context.Context, tenantID, threadID string) (string, int, error) {
	var runID string
	var priority int
	err := s.tx.QueryRowContext(ctx, `SELECT run_id, priority FROM thread_waiting WHERE tenant_id = ? AND thread_id = ?
		ORDER BY enqueued_at, run_id LIMIT 1`, tenantID, threadID).Scan(&runID, &priority)
	if err == sql.ErrNoRows {
		return "", 0, nil
	}
	return runID, priority, mapErr(err, "thread "+threadID)
}

func (s stmts) RemoveWaiting(ctx context.Context, tenantID, threadID, runID string) error {
	_, err := s.tx.ExecContext(ctx, `DELETE FROM thread_waiting WHERE tenant_id = ? AND thread_id = ? AND run_id = ?`,
		tenantID, threadID, runID)
	return mapErr(err, "thread "+threadID)
}

func (s stmts) RunTurn(ctx context.Context, tenantID, runID string) (store.RunInput, bool, []store.Step, error) {
	var in store.RunInput
	var input string
	var started sql.NullInt64
	if err := s.tx.QueryRowContext(ctx, `SELECT input, started_at FROM runs WHERE tenant_id = ? AND run_id = ?`,
		tenantID, runID).Scan(&input, &started); err != nil {
		return in, false, nil, mapErr(err, "run "+runID)
	}
	if err := sqlstore.FromJSON([]byte(input), &in); err != nil {
		return in, false, nil, err
	}
	rows, err := s.tx.QueryContext(ctx, `SELECT step_id, idx, kind, status, input, output FROM steps
		WHERE tenant_id = ? AND run_id = ? ORDER BY idx, step_id`, tenantID, runID)
	if err != nil {
		return in, false, nil, mapErr(err, "steps")
	}
	defer rows.Close()
	var steps []store.Step
	for rows.Next() {
		var st store.Step
		var sin, sout sql.NullString
		if err := rows.Scan(&st.StepID, &st.Index, &st.Kind, &st.Status, &sin, &sout); err != nil {
			return in, false, nil, mapErr(err, "steps")
		}
		st.Input, st.Output = sqlstore.RawFrom(nullBytes(sin)), sqlstore.RawFrom(nullBytes(sout))
		steps = append(steps, st)
	}
	return in, started.Valid, steps, mapErr(rows.Err(), "steps")
}

func (s stmts) LastMessageSeq(ctx context.Context, tenantID, threadID string) (int64, error) {
	var seq int64
	err := s.tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM thread_messages WHERE tenant_id = ? AND thread_id = ?`,
		tenantID, threadID).Scan(&seq)
	return seq, mapErr(err, "thread "+threadID)
}

func (s stmts) InsertMessage(ctx context.Context, m store.ThreadMessage) error {
	_, err := s.tx.ExecContext(ctx, `INSERT INTO thread_messages (tenant_id, thread_id, seq, message_id, run_id, role,
		content, tool_calls, tool_call_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)`, m.TenantID, m.ThreadID, m.Seq,
		m.MessageID, m.RunID, m.Role, m.Content, sqlstore.RawOrNull(m.ToolCalls), m.ToolCallID, micros(m.CreatedAt))
	return mapErr(err, "thread message "+strconv.FormatInt(m.Seq, 10))
}

func (s stmts) HasWaiting(ctx context.Context, tenantID, threadID string) (bool, error) {
	var n int
	err := s.tx.QueryRowContext(ctx, `SELECT count(*) FROM thread_waiting WHERE tenant_id = ? AND thread_id = ?`,
		tenantID, threadID).Scan(&n)
	return n > 0, mapErr(err, "thread "+threadID)
}

func (s stmts) DeleteThreadRows(ctx context.Context, tenantID, threadID string) error {
	for _, q := range []string{`DELETE FROM thread_messages WHERE tenant_id = ? AND thread_id = ?`,
		`DELETE FROM thread_waiting WHERE tenant_id = ? AND thread_id = ?`,
		`DELETE FROM threads WHERE tenant_id = ? AND thread_id = ?`} {
		if _, err := s.tx.ExecContext(ctx, q, tenantID, threadID); err != nil {
			return mapErr(err, "thread "+threadID)
		}
	}
	return nil
}
