package federation

import (
	"encoding/json"
	"strings"

	"github.com/nexixai/agentos/internal/store"
)

// ServiceName is the service's name in /v1/health and logs.
const ServiceName = "federation"

// APIVersion is the one API version this node speaks.
const APIVersion = "v1"

// Capability names (the canonical, underscore spelling).
const (
	CapRunsForward     = "runs_forward"
	CapEventsStream    = "events_stream"
	CapTenantIsolation = "tenant_isolation"
	CapToolHosting     = "tool_hosting"
)

// NormalizeCapability maps the accepted spellings of a capability name
// (runs.forward, runs-forward, RUNS_FORWARD) to the canonical runs_forward.
func NormalizeCapability(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.NewReplacer(".", "_", "-", "_").Replace(s)
}

// PeerInfo is the body of GET /v1/federation/peer.
type PeerInfo struct {
	StackID     string            `json:"stack_id"`
	Environment string            `json:"environment"`
	Region      string            `json:"region"`
	APIVersions []string          `json:"api_versions"`
	Endpoints   map[string]string `json:"endpoints"`
	Build       BuildInfo         `json:"build"`
}

// BuildInfo describes the running binary.
type BuildInfo struct {
	Version   string `json:"version"`
	GitSHA    string `json:"git_sha"`
	Timestamp string `json:"timestamp"`
}

// Capabilities is the body of GET /v1/federation/peer/capabilities.
type Capabilities struct {
	// Supports maps canonical capability names to whether the node has them.
	Supports map[string]bool `json:"supports"`
	Limits   Limits          `json:"limits"`
	Models   ModelsInfo      `json:"models"`
}

// Has reports whether the capability (any accepted spelling) is supported.
func (c Capabilities) Has(name string) bool { return c.Supports[NormalizeCapability(name)] }

// Limits are the node's advertised limits.
type Limits struct {
	MaxConcurrentRuns int `json:"max_concurrent_runs"`
	MaxEventStreams   int `json:"max_event_streams"`
}

// ModelsInfo advertises what models a node can serve.
type ModelsInfo struct {
	Tiers            []string `json:"tiers"`
	Backends         []string `json:"backends"`
	MaxContextTokens int      `json:"max_context_tokens"`
}

// ForwardRequest is the body of POST /v1/federation/runs:forward. The bare
// inner object (without "forward") is accepted too.
type ForwardRequest struct {
	Forward *Forward `json:"forward"`
}

// Forward asks to run an agent on a peer.
type Forward struct {
	TargetSelector TargetSelector  `json:"target_selector"`
	Auth           json.RawMessage `json:"auth,omitempty"`
	RunRequest     *RunRequest     `json:"run_request"`
	Traceparent    string          `json:"traceparent,omitempty"`
}

// TargetSelector chooses the peer.
type TargetSelector struct {
	StackID              string   `json:"stack_id,omitempty"`
	Region               string   `json:"region,omitempty"`
	RequiredCapabilities []string `json:"required_capabilities,omitempty"`
	PreferredModelTier   string   `json:"preferred_model_tier,omitempty"`
}

// RunRequest is the run to create on the peer (CONTRACT §4 run create body
// plus the agent id).
type RunRequest struct {
	AgentID        string          `json:"agent_id"`
	Input          json.RawMessage `json:"input"`
	Context        json.RawMessage `json:"context,omitempty"`
	Tooling        json.RawMessage `json:"tooling,omitempty"`
	RunOptions     json.RawMessage `json:"run_options,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// Forwarded is the result of a forward.
type Forwarded struct {
	TenantID        string `json:"tenant_id"`
	RemoteStackID   string `json:"remote_stack_id"`
	RemoteRunID     string `json:"remote_run_id"`
	RemoteEventsURL string `json:"remote_events_url"`
	Status          string `json:"status"`
}

// IngestRequest is the body of POST /v1/federation/events:ingest.
type IngestRequest struct {
	Events []json.RawMessage `json:"events"`
	Ingest IngestOptions     `json:"ingest"`
	PeerID string            `json:"peer_id,omitempty"`
	Auth   json.RawMessage   `json:"auth,omitempty"`
}

// IngestOptions says where events come from and how to dedupe them.
type IngestOptions struct {
	SourceStackID string `json:"source_stack_id"`
	Dedupe        struct {
		Mode string `json:"mode"`
	} `json:"dedupe"`
}

// IngestRejection explains one rejected event.
type IngestRejection struct {
	Index   int    `json:"index"`
	EventID string `json:"event_id,omitempty"`
	Reason  string `json:"reason"`
}

// sseData is the data line of an SSE event frame.
type sseData struct {
	Event store.Event `json:"event"`
}

// authBody is the liberal form of an Auth Context in a body: nested
// principal or flat principal_id.
type authBody struct {
	TenantID    string `json:"tenant_id"`
	PrincipalID string `json:"principal_id"`
	Principal   struct {
		PrincipalID string `json:"principal_id"`
	} `json:"principal"`
}

func parseAuthBody(raw json.RawMessage) (authBody, bool) {
	var a authBody
	if len(raw) == 0 || string(raw) == "null" {
		return a, false
	}
	if json.Unmarshal(raw, &a) != nil {
		return a, false
	}
	if a.PrincipalID == "" {
		a.PrincipalID = a.Principal.PrincipalID
	}
	return a, true
}
