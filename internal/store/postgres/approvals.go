package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

var _ store.ApprovalStore = (*DB)(nil)

// PutApproval inserts or replaces an approval inside a run change.
func (s stmts) PutApproval(ctx context.Context, a store.Approval) error {
	_, err := s.tx.Exec(ctx, `INSERT INTO approvals (tenant_id, run_id, tool_call_id, step_id, tool_id, arguments,
		status, created_at, deadline, decided_by, decided_at, decided_arguments) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) `+
		sqlstore.ApprovalUpsert,
		a.TenantID, a.RunID, a.ToolCallID, a.StepID, a.ToolID, sqlstore.RawOrNull(a.Arguments), a.Status,
		sqlstore.UTC(a.CreatedAt), sqlstore.UTC(a.Deadline), a.DecidedBy, tsPtr(a.DecidedAt), sqlstore.RawOrNull(a.DecidedArguments))
	return mapErr(err, "approval "+a.ToolCallID)
}

// Dequeue removes the run's queue entry inside a run change.
func (s stmts) Dequeue(ctx context.Context, tenantID, runID string) error {
	_, err := s.tx.Exec(ctx, `DELETE FROM queue_entries WHERE tenant_id = $1 AND run_id = $2`, tenantID, runID)
	return mapErr(err, "queue entry")
}

const approvalCols = `tenant_id, run_id, tool_call_id, step_id, tool_id, arguments, status, created_at, deadline,
	decided_by, decided_at, decided_arguments`

func scanApproval(row pgx.Row) (store.Approval, error) {
	var a store.Approval
	var args, decidedArgs *string
	var created, deadline time.Time
	var decided *time.Time
	if err := row.Scan(&a.TenantID, &a.RunID, &a.ToolCallID, &a.StepID, &a.ToolID, &args, &a.Status, &created,
		&deadline, &a.DecidedBy, &decided, &decidedArgs); err != nil {
		return a, err
	}
	if args != nil {
		a.Arguments = []byte(*args)
	}
	if decidedArgs != nil {
		a.DecidedArguments = []byte(*decidedArgs)
	}
	a.CreatedAt, a.Deadline = created.UTC(), deadline.UTC()
	if decided != nil {
		t := decided.UTC()
		a.DecidedAt = &t
	}
	return a, nil
}

// ListDueApprovals lists pending approvals past their deadline, earliest first.
func (db *DB) ListDueApprovals(ctx context.Context, now time.Time, limit int) ([]store.Approval, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.pool.Query(ctx, `SELECT `+approvalCols+` FROM approvals WHERE status = 'pending' AND deadline <= $1
		ORDER BY deadline LIMIT $2`, sqlstore.UTC(now), limit)
	if err != nil {
		return nil, mapErr(err, "approvals")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Approval, error) { return scanApproval(r) })
	return out, mapErr(err, "approvals")
}

// GetApproval returns ErrNotFound if absent or in another tenant.
func (db *DB) GetApproval(ctx context.Context, tenantID, runID, toolCallID string) (store.Approval, error) {
	a, err := scanApproval(db.pool.QueryRow(ctx, `SELECT `+approvalCols+` FROM approvals
		WHERE tenant_id = $1 AND run_id = $2 AND tool_call_id = $3`, tenantID, runID, toolCallID))
	return a, mapErr(err, "approval "+toolCallID)
}
