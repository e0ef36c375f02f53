package store

import (
	"encoding/json"
	"time"
)

// Tenant statuses.
const (
	TenantActive   = "active"
	TenantDisabled = "disabled"
)

// Tenant is a customer of the node. Its JSON form is the contract's tenant
// object (CONTRACT §3).
type Tenant struct {
	TenantID        string       `json:"tenant_id"`
	Name            string       `json:"name"`
	Status          string       `json:"status"`
	PlanTier        string       `json:"plan_tier"`
	CreatedAt       time.Time    `json:"created_at"`
	UpdatedAt       time.Time    `json:"updated_at"`
	DefaultPolicyID string       `json:"default_policy_id"`
	Entitlements    Entitlements `json:"entitlements"`
	Quotas          Quotas       `json:"quotas"`
	Metadata        Metadata     `json:"metadata"`
}

// Entitlements say what a tenant may use. An empty list means nothing is
// allowed, except "*" which allows everything.
type Entitlements struct {
	ModelTiersAllowed    []string `json:"model_tiers_allowed"`
	ModelBackendsAllowed []string `json:"model_backends_allowed"`
	ToolIDsAllowed       []string `json:"tool_ids_allowed"`
}

// Quotas are a tenant's limits. Zero means "unlimited" unless a field says otherwise.
type Quotas struct {
	Runs    RunQuotas     `json:"runs"`
	Tools   ToolQuotas    `json:"tools"`
	Models  ModelQuotas   `json:"models"`
	Storage StorageQuotas `json:"storage"`
}

// RunQuotas limit run creation and concurrency.
type RunQuotas struct {
	MaxConcurrentRuns int     `json:"max_concurrent_runs"`
	RunCreateQPS      float64 `json:"run_create_qps"`
	RunCreateBurst    int     `json:"run_create_burst"`
	// MaxConcurrentStreams caps the tenant's open run event streams (SSE)
	// on each service of a node; 0 (or absent, as in tenants stored before
	// the field existed) means the node default AGENTOS_QUOTA_MAX_STREAMS.
	MaxConcurrentStreams int `json:"max_concurrent_streams"`
}

// ToolQuotas limit tool calls.
type ToolQuotas struct {
	ToolCallsPerMinute int `json:"tool_calls_per_minute"`
}

// ModelQuotas limit model use.
type ModelQuotas struct {
	TokenBudget          TokenBudget `json:"token_budget"`
	MaxTokensPerRequest  int         `json:"max_tokens_per_request"`
	MaxRequestsPerMinute int         `json:"max_requests_per_minute"`
}

// TokenBudget is a token and cost allowance per window (minute, hour, day).
type TokenBudget struct {
	Window     string  `json:"window"`
	MaxTokens  int64   `json:"max_tokens"`
	MaxCostUSD float64 `json:"max_cost_usd"`
}

// StorageQuotas limit tenant-scoped storage.
type StorageQuotas struct {
	// MaxMemoryBytes bounds the key/value store and memory together.
	MaxMemoryBytes int64 `json:"max_memory_bytes"`
	// MaxArtifactBytes bounds the total size of the tenant's artifacts
	// (files tools and workers produce); 0 (or absent, as in tenants
	// stored before the field existed) means unlimited.
	MaxArtifactBytes int64 `json:"max_artifact_bytes"`
}

// Metadata is free-form tenant information.
type Metadata struct {
	Tags           []string `json:"tags"`
	BillingAccount string   `json:"billing_account"`
}

// Token is an opaque API token. Only the hash of its secret is stored.
type Token struct {
	TokenID     string     `json:"token_id"`
	TenantID    string     `json:"tenant_id"`
	PrincipalID string     `json:"principal_id"`
	SecretHash  string     `json:"-"`
	Scopes      []string   `json:"scopes"`
	Roles       []string   `json:"roles"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
}

// Agent statuses.
const (
	AgentActive     = "active"
	AgentInactive   = "inactive"
	AgentDeprecated = "deprecated"
)

// Agent is a tenant's agent definition (CONTRACT §4).
type Agent struct {
	AgentID      string        `json:"agent_id"`
	TenantID     string        `json:"tenant_id"`
	Name         string        `json:"name"`
	Description  string        `json:"description"`
	Version      int           `json:"version"`
	Status       string        `json:"status"`
	ModelRef     string        `json:"model_ref"`
	Instructions string        `json:"instructions"`
	Tools        []string      `json:"tools"`
	Defaults     AgentDefaults `json:"defaults"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`

	// Human approval of tool calls (store/approvals.go); stored with the
	// defaults (one JSON column), so they need no schema change.
	AgentApproval
	// Where its tool calls run (worker nodes by labels); stored the same way.
	AgentPlacement
}

// AgentDefaults are run options an agent applies when a run does not set them.
type AgentDefaults struct {
	MaxSteps  int `json:"max_steps"`
	TimeoutMs int `json:"timeout_ms"`
	// OnToolError is "continue" (default: the model sees the error) or "fail".
	OnToolError string `json:"on_tool_error,omitempty"`
	// ModelRetries is how many times a retryable model failure is retried
	// with backoff before the run fails (default 0).
	ModelRetries int `json:"model_retries,omitempty"`
}

// RunStatus is a run's lifecycle state.
type RunStatus string

// Run statuses.
const (
	RunQueued    RunStatus = "queued"
	RunRunning   RunStatus = "running"
	RunCompleted RunStatus = "completed"
	RunFailed    RunStatus = "failed"
	RunCanceled  RunStatus = "canceled"
	// RunRequiresAction: the run waits for a person to approve, reject or
	// edit a tool call (store/approvals.go). Not terminal; the run holds
	// no queue entry, lease or executor while it waits.
	RunRequiresAction RunStatus = "requires_action"
)

// Terminal reports whether no further transition is possible.
func (s RunStatus) Terminal() bool {
	return s == RunCompleted || s == RunFailed || s == RunCanceled
}

// Run is one execution of an agent (CONTRACT §4).
type Run struct {
	TenantID    string    `json:"tenant_id"`
	AgentID     string    `json:"agent_id"`
	RunID       string    `json:"run_id"`
	PrincipalID string    `json:"principal_id"`
	Status      RunStatus `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	// Absent, not null, until set: the original API's Run does not admit
	// null here.
	StartedAt      *time.Time      `json:"started_at,omitempty"`
	CompletedAt    *time.Time      `json:"completed_at,omitempty"`
	Input          RunInput        `json:"input"`
	Context        json.RawMessage `json:"context,omitempty"`
	Tooling        Tooling         `json:"tooling"`
	RunOptions     RunOptions      `json:"run_options"`
	Summary        RunSummary      `json:"summary"`
	Output         *Output         `json:"output"`
	Error          *ErrorBody      `json:"error"`
	EventsURL      string          `json:"events_url"`
	CorrelationID  string          `json:"correlation_id"`
	Traceparent    string          `json:"-"`
	IdempotencyKey string          `json:"-"`
	// Attempt counts executor starts; more than one means the run was resumed.
	Attempt int `json:"-"`
	// ThreadID is the thread the run was created on ("" for none), and
	// MultitaskStrategy what it did if the thread had an active run.
	ThreadID          string `json:"thread_id,omitempty"`
	MultitaskStrategy string `json:"multitask_strategy,omitempty"`
}

// RunInput is the run's user input.
type RunInput struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Tooling narrows the tools a run may use.
type Tooling struct {
	ToolAllowlist []string `json:"tool_allowlist,omitempty"`
	ToolDenymap   []string `json:"tool_denymap,omitempty"`
}

// RunOptions are per-run settings.
type RunOptions struct {
	Priority     string `json:"priority"`
	TimeoutMs    int    `json:"timeout_ms"`
	MaxSteps     int    `json:"max_steps"`
	StreamEvents bool   `json:"stream_events"`
	DryRun       bool   `json:"dry_run"`
	ModelTier    string `json:"model_tier,omitempty"`
	// Stream is the run create's stream object (nil: nothing streamed
	// beyond the usual events).
	Stream *RunStream `json:"stream,omitempty"`
}

// RunStream says what a run streams besides its usual events.
type RunStream struct {
	// Tokens: model output arrives as agentos.model.delta events while
	// the model generates.
	Tokens bool `json:"tokens"`
}

// StreamTokens reports whether the run asked for token deltas.
func (o RunOptions) StreamTokens() bool { return o.Stream != nil && o.Stream.Tokens }

// RunSummary counts what a run did.
type RunSummary struct {
	StepsTotal      int `json:"steps_total"`
	ToolCallsTotal  int `json:"tool_calls_total"`
	ModelCallsTotal int `json:"model_calls_total"`
}

// Output is a run's final answer.
type Output struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// ErrorBody is the contract's error object as stored on a failed run.
type ErrorBody struct {
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	Retryable bool           `json:"retryable"`
	Details   map[string]any `json:"details,omitempty"`
}

// Step kinds and statuses.
const (
	StepModel = "model"
	StepTool  = "tool"

	StepStarted   = "started"
	StepCompleted = "completed"
	StepFailed    = "failed"
	// StepAwaitingApproval is a tool step waiting for a person's decision
	// (its run is requires_action); the tool has not been called.
	StepAwaitingApproval = "awaiting_approval"
)

// Step is one recorded unit of a run: a model call or a tool call. Steps are
// what a resumed run replays instead of executing again.
type Step struct {
	StepID      string          `json:"step_id"`
	TenantID    string          `json:"tenant_id"`
	RunID       string          `json:"run_id"`
	Index       int             `json:"index"`
	Kind        string          `json:"kind"`
	Name        string          `json:"name"`
	Status      string          `json:"status"`
	ToolCallID  string          `json:"tool_call_id,omitempty"`
	Input       json.RawMessage `json:"input,omitempty"`
	Output      json.RawMessage `json:"output,omitempty"`
	StartedAt   time.Time       `json:"started_at"`
	CompletedAt *time.Time      `json:"completed_at,omitempty"`
}

// Event types (CONTRACT §4).
const (
	EventRunCreated        = "agentos.run.created"
	EventStepStarted       = "agentos.run.step.started"
	EventToolCallRequested = "agentos.tool.call.requested"
	EventToolCallCompleted = "agentos.tool.call.completed"
	EventModelRequested    = "agentos.model.requested"
	EventModelCompleted    = "agentos.model.completed"
	EventModelDelta        = "agentos.model.delta"
	EventRunCompleted      = "agentos.run.completed"
	EventRunFailed         = "agentos.run.failed"
	EventRunCanceled       = "agentos.run.canceled"
	// Human approval (store/approvals.go).
	EventRunRequiresAction = "agentos.run.requires_action"
	EventRunResumed        = "agentos.run.resumed"
)

// IsTerminalEvent reports whether an event of this type ends a run's stream.
func IsTerminalEvent(t string) bool {
	return t == EventRunCompleted || t == EventRunFailed || t == EventRunCanceled
}

// Event is the contract's event envelope.
type Event struct {
	EventID  string    `json:"event_id"`
	Sequence int64     `json:"sequence"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	TenantID string    `json:"tenant_id"`
	AgentID  string    `json:"agent_id"`
	RunID    string    `json:"run_id"`
	// Absent, not null, for run-level events: the original API's Event
	// does not admit null here.
	StepID  *string         `json:"step_id,omitempty"`
	Trace   EventTrace      `json:"trace"`
	Payload json.RawMessage `json:"payload"`
}

// EventTrace ties an event to a W3C trace.
type EventTrace struct {
	Traceparent string `json:"traceparent"`
	SpanID      string `json:"span_id"`
}

// AuditRecord is one append-only, hash-chained audit entry.
type AuditRecord struct {
	AuditID     string    `json:"audit_id"`
	Seq         int64     `json:"seq"`
	Time        time.Time `json:"time"`
	TenantID    string    `json:"tenant_id"`
	PrincipalID string    `json:"principal_id"`
	// OnBehalfOf is the principal PrincipalID (the authenticated actor)
	// acted for, when that is another principal; "" otherwise.
	OnBehalfOf    string         `json:"on_behalf_of,omitempty"`
	Action        string         `json:"action"`
	Target        string         `json:"target"`
	Outcome       string         `json:"outcome"`
	PolicyContext map[string]any `json:"policy_context,omitempty"`
	Details       map[string]any `json:"details,omitempty"`
	CorrelationID string         `json:"correlation_id"`
	PrevHash      string         `json:"prev_hash"`
	Hash          string         `json:"hash"`
	// Stored is what the store holds for this record, as read back, for
	// verification; nil on records not read from a store. Not part of the
	// record's JSON (so not part of what is hashed).
	Stored *StoredAudit `json:"-"`
}

// StoredAudit is an audit record's stored bytes.
type StoredAudit struct {
	// Canonical is the record's canonical form (CanonicalAudit) exactly as
	// written; Hash is its SHA-256. Nil for records written before the
	// canonical form existed (legacy records).
	Canonical []byte
	// PolicyContext and Details are a legacy record's map columns as
	// stored (the legacy hash covered these bytes).
	PolicyContext, Details []byte
}

// UsageRecord is one metered model call.
type UsageRecord struct {
	UsageID     string `json:"usage_id"`
	TenantID    string `json:"tenant_id"`
	PrincipalID string `json:"principal_id"` // whose usage: the principal the call was made for
	// ActorID is the principal that made the call on PrincipalID's behalf
	// (a delegating service, or the orchestrator for a run), when that is
	// another principal; "" otherwise.
	ActorID      string    `json:"actor_id,omitempty"`
	AgentID      string    `json:"agent_id,omitempty"`
	RunID        string    `json:"run_id,omitempty"`
	ModelID      string    `json:"model_id"`
	Backend      string    `json:"backend"`
	Operation    string    `json:"operation"`
	InputTokens  int64     `json:"input_tokens"`
	OutputTokens int64     `json:"output_tokens"`
	CostUSD      float64   `json:"cost_usd"`
	Time         time.Time `json:"time"`
}

// Forward records that a run of a tenant was forwarded to a peer node.
type Forward struct {
	TenantID        string    `json:"tenant_id"`
	RunID           string    `json:"run_id"` // the remote run id
	PeerStackID     string    `json:"peer_stack_id"`
	PrincipalID     string    `json:"principal_id"`
	RemoteEventsURL string    `json:"remote_events_url"`
	CreatedAt       time.Time `json:"created_at"`
}
