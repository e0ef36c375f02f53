package store

import (
	"context"
	"encoding/json"
	"time"
)

// ToolKindWebhook is the kind of a tool invoked by an HTTPS (or HTTP) POST
// signed with HMAC-SHA256 (see package tools/webhook).
const ToolKindWebhook = "webhook"

// ToolDef is a tool a tenant registered (CONTRACT §3 "tool registration for a
// tenant", storage key tenant/{tenant_id}/tools/{tool_id}). ToolID starts with
// "tool." and never collides with a builtin tool id (the orchestrator checks
// that when the tool is registered).
//
// Secret is the HMAC key shared with the tenant's webhook, which verifies the
// signature of every call. The node must be able to sign with it, so it is
// stored as given, in the node's database like any other credential the node
// itself must use; it is never returned by the admin API.
type ToolDef struct {
	TenantID    string          `json:"tenant_id"`
	ToolID      string          `json:"tool_id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
	Kind        string          `json:"kind"`
	URL         string          `json:"url"`
	Secret      string          `json:"-"`
	Idempotent  bool            `json:"idempotent"`
	TimeoutMs   int             `json:"timeout_ms"`
	// RequiresApproval makes every call of the tool wait for a person's
	// decision (store/approvals.go).
	RequiresApproval bool      `json:"requires_approval"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// ToolStore keeps the tools tenants registered. Every method is
// tenant-scoped: another tenant's tool is not found.
type ToolStore interface {
	// PutTool creates the tool or replaces it (CreatedAt is kept on replace).
	PutTool(ctx context.Context, d ToolDef) error
	// GetTool returns ErrNotFound if absent or in another tenant.
	GetTool(ctx context.Context, tenantID, toolID string) (ToolDef, error)
	// ListTools lists a tenant's tools ordered by id.
	ListTools(ctx context.Context, tenantID string) ([]ToolDef, error)
	// DeleteTool removes a tool. ErrNotFound if absent or in another tenant.
	DeleteTool(ctx context.Context, tenantID, toolID string) error
}
