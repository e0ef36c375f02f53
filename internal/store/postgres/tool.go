package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// PutTool creates the tool or replaces it (created_at is kept on replace).
func (db *DB) PutTool(ctx context.Context, d store.ToolDef) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO tools (tenant_id, tool_id, name, description, input_schema, kind,
		url, secret, idempotent, timeout_ms, created_at, updated_at, requires_approval) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) `+sqlstore.ToolUpsert,
		d.TenantID, d.ToolID, d.Name, d.Description, string(d.InputSchema), d.Kind, d.URL, d.Secret,
		d.Idempotent, d.TimeoutMs, ts(d.CreatedAt), ts(d.UpdatedAt), d.RequiresApproval)
	return mapErr(err, "tool "+d.ToolID)
}

const toolCols = `tenant_id, tool_id, name, description, input_schema, kind, url, secret, idempotent, timeout_ms, created_at, updated_at, requires_approval`

func scanTool(row pgx.Row) (store.ToolDef, error) {
	var d store.ToolDef
	var schema string
	var created, updated *time.Time
	if err := row.Scan(&d.TenantID, &d.ToolID, &d.Name, &d.Description, &schema, &d.Kind, &d.URL, &d.Secret,
		&d.Idempotent, &d.TimeoutMs, &created, &updated, &d.RequiresApproval); err != nil {
		return d, err
	}
	d.InputSchema = []byte(schema)
	d.CreatedAt, d.UpdatedAt = fromTS(created), fromTS(updated)
	return d, nil
}

// GetTool returns ErrNotFound if absent or in another tenant.
func (db *DB) GetTool(ctx context.Context, tenantID, toolID string) (store.ToolDef, error) {
	d, err := scanTool(db.pool.QueryRow(ctx, `SELECT `+toolCols+` FROM tools WHERE tenant_id = $1 AND tool_id = $2`,
		tenantID, toolID))
	return d, mapErr(err, "tool "+toolID)
}

// ListTools lists a tenant's tools ordered by id.
func (db *DB) ListTools(ctx context.Context, tenantID string) ([]store.ToolDef, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+toolCols+` FROM tools WHERE tenant_id = $1 ORDER BY tool_id`, tenantID)
	if err != nil {
		return nil, mapErr(err, "tools")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ToolDef, error) { return scanTool(r) })
	return out, mapErr(err, "tools")
}

// DeleteTool removes a tool. ErrNotFound if absent or in another tenant.
func (db *DB) DeleteTool(ctx context.Context, tenantID, toolID string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM tools WHERE tenant_id = $1 AND tool_id = $2`, tenantID, toolID)
	return mustAffect(tag, err, "tool "+toolID)
}
