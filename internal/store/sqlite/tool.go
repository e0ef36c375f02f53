package sqlite

import (
	"context"
	"database/sql"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// PutTool creates the tool or replaces it (created_at is kept on replace).
func (db *DB) PutTool(ctx context.Context, d store.ToolDef) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tools (tenant_id, tool_id, name, description, input_schema, kind,
			url, secret, idempotent, timeout_ms, created_at, updated_at, requires_approval) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) `+sqlstore.ToolUpsert,
			d.TenantID, d.ToolID, d.Name, d.Description, string(d.InputSchema), d.Kind, d.URL, d.Secret,
			d.Idempotent, d.TimeoutMs, micros(d.CreatedAt), micros(d.UpdatedAt), d.RequiresApproval)
		return mapErr(err, "tool "+d.ToolID)
	})
}

const toolCols = `tenant_id, tool_id, name, description, input_schema, kind, url, secret, idempotent, timeout_ms, created_at, updated_at, requires_approval`

func scanTool(row interface{ Scan(...any) error }) (store.ToolDef, error) {
	var d store.ToolDef
	var schema string
	var created, updated sql.NullInt64
	if err := row.Scan(&d.TenantID, &d.ToolID, &d.Name, &d.Description, &schema, &d.Kind, &d.URL, &d.Secret,
		&d.Idempotent, &d.TimeoutMs, &created, &updated, &d.RequiresApproval); err != nil {
		return d, err
	}
	d.InputSchema = []byte(schema)
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	return d, nil
}

// GetTool returns ErrNotFound if absent or in another tenant.
func (db *DB) GetTool(ctx context.Context, tenantID, toolID string) (store.ToolDef, error) {
	d, err := scanTool(db.queryRow(ctx, `SELECT `+toolCols+` FROM tools WHERE tenant_id = ? AND tool_id = ?`,
		tenantID, toolID))
	return d, mapErr(err, "tool "+toolID)
}

// ListTools lists a tenant's tools ordered by id.
func (db *DB) ListTools(ctx context.Context, tenantID string) ([]store.ToolDef, error) {
	rows, err := db.query(ctx, `SELECT `+toolCols+` FROM tools WHERE tenant_id = ? ORDER BY tool_id`, tenantID)
	if err != nil {
		return nil, mapErr(err, "tools")
	}
	defer rows.Close()
	var out []store.ToolDef
	for rows.Next() {
		d, err := scanTool(rows)
		if err != nil {
			return nil, mapErr(err, "tools")
		}
		out = append(out, d)
	}
	return out, mapErr(rows.Err(), "tools")
}

// DeleteTool removes a tool. ErrNotFound if absent or in another tenant.
func (db *DB) DeleteTool(ctx context.Context, tenantID, toolID string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM tools WHERE tenant_id = ? AND tool_id = ?`, tenantID, toolID)
		if err != nil {
			return mapErr(err, "tool "+toolID)
		}
		return mustAffect(res, "tool "+toolID)
	})
}
