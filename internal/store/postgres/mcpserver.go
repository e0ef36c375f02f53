package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// PutMCPServer creates the server or replaces it (created_at is kept on replace).
func (db *DB) PutMCPServer(ctx context.Context, s store.MCPServer) error {
	c, err := sqlstore.EncodeMCPServer(s)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO mcp_servers (tenant_id, name, transport, url, headers, secret,
		command, args, env, timeout_ms, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) `+sqlstore.MCPServerUpsert,
		s.TenantID, s.Name, s.Transport, s.URL, c.Headers, s.Secret, s.Command, c.Args, c.Env, s.TimeoutMs,
		ts(s.CreatedAt), ts(s.UpdatedAt))
	return mapErr(err, "mcp server "+s.Name)
}

const mcpServerCols = `tenant_id, name, transport, url, headers, secret, command, args, env, timeout_ms, created_at, updated_at`

func scanMCPServer(row pgx.Row) (store.MCPServer, error) {
	var s store.MCPServer
	var headers, args, env string
	var created, updated *time.Time
	if err := row.Scan(&s.TenantID, &s.Name, &s.Transport, &s.URL, &headers, &s.Secret, &s.Command, &args, &env,
		&s.TimeoutMs, &created, &updated); err != nil {
		return s, err
	}
	s.CreatedAt, s.UpdatedAt = fromTS(created), fromTS(updated)
	return s, sqlstore.DecodeMCPServer(&s, []byte(headers), []byte(args), []byte(env))
}

// GetMCPServer returns ErrNotFound if absent or in another tenant.
func (db *DB) GetMCPServer(ctx context.Context, tenantID, name string) (store.MCPServer, error) {
	s, err := scanMCPServer(db.pool.QueryRow(ctx, `SELECT `+mcpServerCols+` FROM mcp_servers WHERE tenant_id = $1 AND name = $2`,
		tenantID, name))
	return s, mapErr(err, "mcp server "+name)
}

// ListMCPServers lists a tenant's servers ordered by name.
func (db *DB) ListMCPServers(ctx context.Context, tenantID string) ([]store.MCPServer, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+mcpServerCols+` FROM mcp_servers WHERE tenant_id = $1 ORDER BY name`, tenantID)
	if err != nil {
		return nil, mapErr(err, "mcp servers")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.MCPServer, error) { return scanMCPServer(r) })
	return out, mapErr(err, "mcp servers")
}

// DeleteMCPServer removes a server. ErrNotFound if absent or in another tenant.
func (db *DB) DeleteMCPServer(ctx context.Context, tenantID, name string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM mcp_servers WHERE tenant_id = $1 AND name = $2`, tenantID, name)
	return mustAffect(tag, err, "mcp server "+name)
}
