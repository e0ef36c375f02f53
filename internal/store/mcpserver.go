package store

import (
	"context"
	"time"
)

// Transports of a registered MCP server.
const (
	// MCPTransportHTTP is the MCP streamable HTTP transport: the node is an
	// HTTP client of the server's URL (through the SSRF guard).
	MCPTransportHTTP = "http"
	// MCPTransportStdio runs the server as a child process of the node and
	// speaks MCP over its stdin and stdout. Only platform admins may
	// register one: it runs a command on the node's host.
	MCPTransportStdio = "stdio"
)

// MCPServer is a Model Context Protocol server a tenant registered (storage
// key tenant/{tenant_id}/mcp-servers/{name}); its tools are the tenant's
// tools "mcp.<name>.<tool>".
//
// Headers, Secret and Env are credentials the node must send or pass on, so
// they are stored as given, like a webhook tool's secret, and never
// returned by the admin API.
type MCPServer struct {
	TenantID  string
	Name      string
	Transport string // MCPTransportHTTP or MCPTransportStdio
	// URL is the streamable HTTP endpoint (transport http).
	URL string
	// Headers are sent with every HTTP request (transport http).
	Headers map[string]string
	// Secret, when set, is sent as "Authorization: Bearer <secret>"
	// (transport http).
	Secret string
	// Command and Args start the server (transport stdio); Env is its
	// whole environment besides PATH and HOME.
	Command string
	Args    []string
	Env     map[string]string
	// TimeoutMs bounds one tool call (the tool's default timeout).
	TimeoutMs int
	CreatedAt time.Time
	UpdatedAt time.Time
}

// MCPServerStore keeps the MCP servers tenants registered. Every method is
// tenant-scoped: another tenant's server is not found.
type MCPServerStore interface {
	// PutMCPServer creates the server or replaces it (CreatedAt is kept on
	// replace).
	PutMCPServer(ctx context.Context, s MCPServer) error
	// GetMCPServer returns ErrNotFound if absent or in another tenant.
	GetMCPServer(ctx context.Context, tenantID, name string) (MCPServer, error)
	// ListMCPServers lists a tenant's servers ordered by name.
	ListMCPServers(ctx context.Context, tenantID string) ([]MCPServer, error)
	// DeleteMCPServer removes a server. ErrNotFound if absent or in
	// another tenant.
	DeleteMCPServer(ctx context.Context, tenantID, name string) error
}
