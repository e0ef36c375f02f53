package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// PutAgent creates the agent or replaces it (created_at is kept on replace).
func (db *DB) PutAgent(ctx context.Context, a store.Agent) error {
	tools, defaults, err := sqlstore.EncodeAgent(a)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO agents (tenant_id, agent_id, name, description, version, status,
		model_ref, instructions, tools, defaults, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) `+sqlstore.AgentUpsert,
		a.TenantID, a.AgentID, a.Name, a.Description, a.Version, a.Status, a.ModelRef, a.Instructions,
		tools, defaults, ts(a.CreatedAt), ts(a.UpdatedAt))
	return mapErr(err, "agent "+a.AgentID)
}

const agentCols = `tenant_id, agent_id, name, description, version, status, model_ref, instructions, tools, defaults, created_at, updated_at`

func scanAgent(row pgx.Row) (store.Agent, error) {
	var a store.Agent
	var tools, defaults []byte
	var created, updated *time.Time
	if err := row.Scan(&a.TenantID, &a.AgentID, &a.Name, &a.Description, &a.Version, &a.Status, &a.ModelRef,
		&a.Instructions, &tools, &defaults, &created, &updated); err != nil {
		return a, err
	}
	a.CreatedAt, a.UpdatedAt = fromTS(created), fromTS(updated)
	return a, sqlstore.DecodeAgent(&a, tools, defaults)
}

// GetAgent returns ErrNotFound if absent or in another tenant.
func (db *DB) GetAgent(ctx context.Context, tenantID, agentID string) (store.Agent, error) {
	a, err := scanAgent(db.pool.QueryRow(ctx, `SELECT `+agentCols+` FROM agents WHERE tenant_id = $1 AND agent_id = $2`,
		tenantID, agentID))
	return a, mapErr(err, "agent "+agentID)
}

// ListAgents lists a tenant's agents ordered by id.
func (db *DB) ListAgents(ctx context.Context, tenantID string) ([]store.Agent, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+agentCols+` FROM agents WHERE tenant_id = $1 ORDER BY agent_id`, tenantID)
	if err != nil {
		return nil, mapErr(err, "agents")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Agent, error) { return scanAgent(r) })
	return out, mapErr(err, "agents")
}
