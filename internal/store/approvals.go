package store

import (
	"context"
	"encoding/json"
	"time"
)

// AgentApproval says which of an agent's tool calls wait for a person
// (docs/api/agent-orchestrator: "Human approval"). A call needs approval
// when its tool is in RequireApproval, its tenant tool definition says
// requires_approval, or ApprovalRule (a CEL expression over `tool` and
// `args`) is true for it.
type AgentApproval struct {
	RequireApproval []string `json:"require_approval,omitempty"`
	ApprovalRule    string   `json:"approval_rule,omitempty"`
	// ApprovalTimeoutMs overrides the node's AGENTOS_APPROVAL_TIMEOUT
	// (0: the node's).
	ApprovalTimeoutMs int64 `json:"approval_timeout_ms,omitempty"`
}

// Approval statuses: pending until decided; the decision's name after.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalRejected = "rejected"
	ApprovalEdited   = "edited"
	ApprovalExpired  = "expired"
)

// Approval is a tool call waiting for (or decided by) a person. It is
// written with the run change that stops the run in requires_action and
// replaced by the one that resumes it (RunChange.Approval), so a pending
// approval is in the store exactly while its run waits.
type Approval struct {
	TenantID   string          `json:"tenant_id"`
	RunID      string          `json:"run_id"`
	ToolCallID string          `json:"tool_call_id"`
	StepID     string          `json:"step_id"`
	ToolID     string          `json:"tool_id"`
	Arguments  json.RawMessage `json:"arguments"`
	Status     string          `json:"status"`
	CreatedAt  time.Time       `json:"created_at"`
	Deadline   time.Time       `json:"deadline"`
	// Set once decided.
	DecidedBy string     `json:"decided_by,omitempty"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
	// DecidedArguments are the arguments the tool runs with after an edit.
	DecidedArguments json.RawMessage `json:"decided_arguments,omitempty"`
}

// ApprovalStore finds approvals. They are written through
// RunStore.ApplyRunChange.
type ApprovalStore interface {
	// ListDueApprovals lists pending approvals, of every tenant, whose
	// deadline is at or before now, earliest first, at most limit (default
	// 100). The orchestrator's sweep rejects them.
	ListDueApprovals(ctx context.Context, now time.Time, limit int) ([]Approval, error)
	// GetApproval returns a run's approval of a tool call; ErrNotFound if
	// absent or in another tenant.
	GetApproval(ctx context.Context, tenantID, runID, toolCallID string) (Approval, error)
}
