package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

var _ store.ApprovalStore = (*DB)(nil)

// PutApproval inserts or replaces an approval inside a run change.
func (s stmts) PutApproval(ctx context.Context, a store.Approval) error {
	_, err := s.tx.ExecContext(ctx, `INSERT INTO approvals (tenant_id, run_id, tool_call_id, step_id, tool_id, arguments,
		status, created_at, deadline, decided_by, decided_at, decided_arguments) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) `+sqlstore.ApprovalUpsert,
		a.TenantID, a.RunID, a.ToolCallID, a.StepID, a.ToolID, sqlstore.RawOrNull(a.Arguments), a.Status,
		a.CreatedAt.UnixMicro(), a.Deadline.UnixMicro(), a.DecidedBy, microsPtr(a.DecidedAt), sqlstore.RawOrNull(a.DecidedArguments))
	return mapErr(err, "approval "+a.ToolCallID)
}

// Dequeue removes the run's queue entry inside a run change.
func (s stmts) Dequeue(ctx context.Context, tenantID, runID string) error {
	_, err := s.tx.ExecContext(ctx, `DELETE FROM queue_entries WHERE tenant_id = ? AND run_id = ?`, tenantID, runID)
	return mapErr(err, "queue entry")
}

const approvalCols = `tenant_id, run_id, tool_call_id, step_id, tool_id, arguments, status, created_at, deadline,
	decided_by, decided_at, decided_arguments`

func scanApproval(row interface{ Scan(...any) error }) (store.Approval, error) {
	var a store.Approval
	var args, decidedArgs sql.NullString
	var created, deadline, decided sql.NullInt64
	if err := row.Scan(&a.TenantID, &a.RunID, &a.ToolCallID, &a.StepID, &a.ToolID, &args, &a.Status, &created,
		&deadline, &a.DecidedBy, &decided, &decidedArgs); err != nil {
		return a, err
	}
	a.Arguments, a.DecidedArguments = nullBytes(args), nullBytes(decidedArgs)
	a.CreatedAt, a.Deadline, a.DecidedAt = fromMicros(created), fromMicros(deadline), fromMicrosPtr(decided)
	return a, nil
}

// ListDueApprovals lists pending approvals past their deadline, earliest first.
func (db *DB) ListDueApprovals(ctx context.Context, now time.Time, limit int) ([]store.Approval, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.query(ctx, `SELECT `+approvalCols+` FROM approvals WHERE status = 'pending' AND deadline <= ?
		ORDER BY deadline LIMIT ?`, now.UnixMicro(), limit)
	if err != nil {
		return nil, mapErr(err, "approvals")
	}
	defer rows.Close()
	var out []store.Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, mapErr(err, "approvals")
		}
		out = append(out, a)
	}
	return out, mapErr(rows.Err(), "approvals")
}

// GetApproval returns ErrNotFound if absent or in another tenant.
func (db *DB) GetApproval(ctx context.Context, tenantID, runID, toolCallID string) (store.Approval, error) {
	a, err := scanApproval(db.queryRow(ctx, `SELECT `+approvalCols+` FROM approvals
		WHERE tenant_id = ? AND run_id = ? AND tool_call_id = ?`, tenantID, runID, toolCallID))
	return a, mapErr(err, "approval "+toolCallID)
}
