package sqlite

import (
	"context"
	"database/sql"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// PutAgent creates the agent or replaces it (created_at is kept on replace).
func (db *DB) PutAgent(ctx context.Context, a store.Agent) error {
	tools, defaults, err := sqlstore.EncodeAgent(a)
	if err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO agents (tenant_id, agent_id, name, description, version, status,
			model_ref, instructions, tools, defaults, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) `+sqlstore.AgentUpsert,
			a.TenantID, a.AgentID, a.Name, a.Description, a.Version, a.Status, a.ModelRef, a.Instructions,
			tools, defaults, micros(a.CreatedAt), micros(a.UpdatedAt))
		return mapErr(err, "agent "+a.AgentID)
	})
}

const agentCols = `tenant_id, agent_id, name, description, version, status, model_ref, instructions, tools, defaults, created_at, updated_at`

func scanAgent(row interface{ Scan(...any) error }) (store.Agent, error) {
	var a store.Agent
	var tools, defaults sql.NullString
	var created, updated sql.NullInt64
	if err := row.Scan(&a.TenantID, &a.AgentID, &a.Name, &a.Description, &a.Version, &a.Status, &a.ModelRef,
		&a.Instructions, &tools, &defaults, &created, &updated); err != nil {
		return a, err
	}
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updated)
	return a, sqlstore.DecodeAgent(&a, nullBytes(tools), nullBytes(defaults))
}

// GetAgent returns ErrNotFound if absent or in another tenant.
func (db *DB) GetAgent(ctx context.Context, tenantID, agentID string) (store.Agent, error) {
	a, err := scanAgent(db.queryRow(ctx, `SELECT `+agentCols+` FROM agents WHERE tenant_id = ? AND agent_id = ?`,
		tenantID, agentID))
	return a, mapErr(err, "agent "+agentID)
}

// ListAgents lists a tenant's agents ordered by id.
func (db *DB) ListAgents(ctx context.Context, tenantID string) ([]store.Agent, error) {
	rows, err := db.query(ctx, `SELECT `+agentCols+` FROM agents WHERE tenant_id = ? ORDER BY agent_id`, tenantID)
	if err != nil {
		return nil, mapErr(err, "agents")
	}
	defer rows.Close()
	var out []store.Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, mapErr(err, "agents")
		}
		out = append(out, a)
	}
	return out, mapErr(rows.Err(), "agents")
}
