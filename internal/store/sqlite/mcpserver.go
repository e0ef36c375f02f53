package sqlite

import (
	"context"
	"database/sql"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// PutMCPServer creates the server or replaces it (created_at is kept on replace).
func (db *DB) PutMCPServer(ctx context.Context, s store.MCPServer) error {
	c, err := sqlstore.EncodeMCPServer(s)
	if err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO mcp_servers (tenant_id, name, transport, url, headers, secret,
			command, args, env, timeout_ms, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) `+sqlstore.MCPServerUpsert,
			s.TenantID, s.Name, s.Transport, s.URL, c.Headers, s.Secret, s.Command, c.Args, c.Env, s.TimeoutMs,
			micros(s.CreatedAt), micros(s.UpdatedAt))
		return mapErr(err, "mcp server "+s.Name)
	})
}

const mcpServerCols = `tenant_id, name, transport, url, headers, secret, command, args, env, timeout_ms, created_at, updated_at`

func scanMCPServer(row interface{ Scan(...any) error }) (store.MCPServer, error) {
	var s store.MCPServer
	var headers, args, env string
	var created, updated sql.NullInt64
	if err := row.Scan(&s.TenantID, &s.Name, &s.Transport, &s.URL, &headers, &s.Secret, &s.Command, &args, &env,
		&s.TimeoutMs, &created, &updated); err != nil {
		return s, err
	}
	s.CreatedAt, s.UpdatedAt = fromMicros(created), fromMicros(updated)
	return s, sqlstore.DecodeMCPServer(&s, []byte(headers), []byte(args), []byte(env))
}

// GetMCPServer returns ErrNotFound if absent or in another tenant.
func (db *DB) GetMCPServer(ctx context.Context, tenantID, name string) (store.MCPServer, error) {
	s, err := scanMCPServer(db.queryRow(ctx, `SELECT `+mcpServerCols+` FROM mcp_servers WHERE tenant_id = ? AND name = ?`,
		tenantID, name))
	return s, mapErr(err, "mcp server "+name)
}

// ListMCPServers lists a tenant's servers ordered by name.
func (db *DB) ListMCPServers(ctx context.Context, tenantID string) ([]store.MCPServer, error) {
	rows, err := db.query(ctx, `SELECT `+mcpServerCols+` FROM mcp_servers WHERE tenant_id = ? ORDER BY name`, tenantID)
	if err != nil {
		return nil, mapErr(err, "mcp servers")
	}
	defer rows.Close()
	var out []store.MCPServer
	for rows.Next() {
		s, err := scanMCPServer(rows)
		if err != nil {
			return nil, mapErr(err, "mcp servers")
		}
		out = append(out, s)
	}
	return out, mapErr(rows.Err(), "mcp servers")
}

// DeleteMCPServer removes a server. ErrNotFound if absent or in another tenant.
func (db *DB) DeleteMCPServer(ctx context.Context, tenantID, name string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM mcp_servers WHERE tenant_id = ? AND name = ?`, tenantID, name)
		if err != nil {
			return mapErr(err, "mcp server "+name)
		}
		return mustAffect(res, "mcp server "+name)
	})
}
