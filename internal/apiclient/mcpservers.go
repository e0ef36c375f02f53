package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// MCPServer is what the admin API shows of a registered MCP server
// (credentials are write-only: only their names come back).
type MCPServer struct {
	TenantID    string    `json:"tenant_id"`
	Name        string    `json:"name"`
	Transport   string    `json:"transport"`
	URL         string    `json:"url,omitempty"`
	HeaderNames []string  `json:"header_names"`
	HasSecret   bool      `json:"has_secret"`
	Command     string    `json:"command,omitempty"`
	Args        []string  `json:"args"`
	EnvNames    []string  `json:"env_names"`
	TimeoutMs   int       `json:"timeout_ms"`
	ToolPrefix  string    `json:"tool_prefix"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Set by GetMCPServer only (it connects to the server).
	Status string `json:"status,omitempty"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
	Tools []string `json:"tools,omitempty"`
}

// PutMCPServer registers or replaces the MCP server name of the tenant
// named by c.TenantID (or the caller's own). spec holds transport, url,
// headers, secret (http) or command, args, env (stdio), timeout_ms.
func (c *Client) PutMCPServer(ctx context.Context, name string, spec map[string]any) (MCPServer, error) {
	var out struct {
		Server MCPServer `json:"mcp_server"`
	}
	err := c.Do(ctx, http.MethodPut, c.BaseURL, "/v1/admin/mcp-servers/"+url.PathEscape(name), map[string]any{"mcp_server": spec}, &out)
	return out.Server, err
}

// GetMCPServer returns a server with its status and tool ids.
func (c *Client) GetMCPServer(ctx context.Context, name string) (MCPServer, error) {
	var out struct {
		Server MCPServer `json:"mcp_server"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/admin/mcp-servers/"+url.PathEscape(name), nil, &out)
	return out.Server, err
}

// ListMCPServers lists the tenant's MCP servers.
func (c *Client) ListMCPServers(ctx context.Context) ([]MCPServer, error) {
	var out struct {
		Servers []MCPServer `json:"mcp_servers"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/admin/mcp-servers", nil, &out)
	return out.Servers, err
}

// DeleteMCPServer unregisters a server.
func (c *Client) DeleteMCPServer(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, c.BaseURL, "/v1/admin/mcp-servers/"+url.PathEscape(name), nil, nil)
}

// RegistryTool is one entry of GET /v1/admin/tools.
type RegistryTool struct {
	ToolID      string         `json:"tool_id"`
	Name        string         `json:"name"`
	Description string         `json:"description"`
	InputSchema map[string]any `json:"input_schema"`
	Kind        string         `json:"kind"`
	TimeoutMs   int            `json:"timeout_ms"`
}

// ListRegistryTools lists the tenant's registered tools, MCP tools
// included, and the MCP servers that could not be listed.
func (c *Client) ListRegistryTools(ctx context.Context) ([]RegistryTool, []map[string]any, error) {
	var out struct {
		Tools       []RegistryTool   `json:"tools"`
		Unavailable []map[string]any `json:"mcp_servers_unavailable"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/admin/tools", nil, &out)
	return out.Tools, out.Unavailable, err
}
