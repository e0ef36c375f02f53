// Package tools is the ToolPort: a registry of tools an agent may call, and
// the builtin tools (tools/builtin). A tool describes itself to the model
// (Spec) and is invoked with the caller's Auth Context and a deadline,
// always through Invoke or InvokeTool (schema check, deadline, panic
// recovery, output bound).
package tools

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nexixai/agentos/internal/auth"
)

// Spec describes a tool.
type Spec struct {
	ToolID      string          `json:"tool_id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
	// Idempotent tools may be re-executed when a crash interrupted a call.
	Idempotent bool `json:"idempotent"`
	// DefaultTimeout applies when the call sets none.
	DefaultTimeout time.Duration `json:"-"`
}

// Call is one invocation.
type Call struct {
	Auth     auth.Context
	TenantID string
	AgentID  string
	RunID    string
	// StepID is the run step making the call (tools that store artifacts
	// record it); empty outside a run.
	StepID     string
	ToolCallID string
	Input      json.RawMessage
}

// Tool is one invocable tool. Invoke must stop promptly when ctx is done.
// Errors are *errs.Error (invalid_request for bad input, quota_exceeded,
// forbidden, dependency_unavailable, timeout...).
type Tool interface {
	Spec() Spec
	Invoke(ctx context.Context, c Call) (json.RawMessage, error)
}
