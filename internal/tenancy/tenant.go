// Package tenancy holds what a node knows about tenants beyond storage:
// default quotas and entitlements (CONTRACT §3), tenant validation and
// PATCH merging, per-tenant rate limiters, and demo/dev seeding.
package tenancy

import (
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// Model tiers (CONTRACT §5 model_ref "tier:<name>").
const (
	TierFast     = "fast"
	TierBalanced = "balanced"
	TierPremium  = "premium"
	// TierEmbed is the tier of embedding models in the model catalogue.
	TierEmbed = "embed"
)

// Budget windows.
const (
	WindowMinute = "minute"
	WindowHour   = "hour"
	WindowDay    = "day"
)

// Defaults that are not configurable through the environment.
const (
	DefaultToolCallsPerMinute  = 120
	DefaultMaxTokensPerRequest = 8192
	DefaultBudgetWindow        = WindowDay
	DefaultBudgetMaxTokens     = 2_000_000
	DefaultBudgetMaxCostUSD    = 50
	DefaultMaxMemoryBytes      = 10 << 20
	DefaultMaxArtifactBytes    = 1 << 30
	DefaultPlanTier            = "standard"
)

// DefaultQuotas returns the quotas of a new tenant: run create rate and
// concurrency from AGENTOS_QUOTA_RUN_CREATE_QPS (burst twice that) and
// AGENTOS_QUOTA_CONCURRENT_RUNS, model requests per minute 60 ×
// AGENTOS_QUOTA_INVOKE_QPS, and the fixed defaults above.
func DefaultQuotas(cfg config.Config) store.Quotas {
	return store.Quotas{
		Runs: store.RunQuotas{
			MaxConcurrentRuns: cfg.QuotaConcurrentRuns,
			RunCreateQPS:      cfg.QuotaRunCreateQPS,
			RunCreateBurst:    int(math.Ceil(2 * cfg.QuotaRunCreateQPS)),
			// MaxConcurrentStreams stays 0, "the node default", so that
			// AGENTOS_QUOTA_MAX_STREAMS applies until an admin sets one.
		},
		Tools: store.ToolQuotas{ToolCallsPerMinute: DefaultToolCallsPerMinute},
		Models: store.ModelQuotas{
			TokenBudget: store.TokenBudget{
				Window:     DefaultBudgetWindow,
				MaxTokens:  DefaultBudgetMaxTokens,
				MaxCostUSD: DefaultBudgetMaxCostUSD,
			},
			MaxTokensPerRequest:  DefaultMaxTokensPerRequest,
			MaxRequestsPerMinute: int(math.Round(60 * cfg.QuotaInvokeQPS)),
		},
		Storage: store.StorageQuotas{MaxMemoryBytes: DefaultMaxMemoryBytes, MaxArtifactBytes: DefaultMaxArtifactBytes},
	}
}

// DefaultEntitlements returns the entitlements of a new tenant: every model
// tier, every backend ("*") and every tool ("*").
func DefaultEntitlements() store.Entitlements {
	return store.Entitlements{
		ModelTiersAllowed:    []string{TierFast, TierBalanced, TierPremium, TierEmbed},
		ModelBackendsAllowed: []string{"*"},
		ToolIDsAllowed:       []string{"*"},
	}
}

// NewTenant returns an active tenant with the default quotas and
// entitlements, created now.
func NewTenant(id, name string, cfg config.Config) store.Tenant {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return store.Tenant{
		TenantID:     id,
		Name:         name,
		Status:       store.TenantActive,
		PlanTier:     DefaultPlanTier,
		CreatedAt:    now,
		UpdatedAt:    now,
		Entitlements: DefaultEntitlements(),
		Quotas:       DefaultQuotas(cfg),
		Metadata:     store.Metadata{Tags: []string{}},
	}
}

// TenantIDPattern is what a tenant id must match.
var TenantIDPattern = regexp.MustCompile(`^tnt_[a-z0-9_]{1,60}$`)

// Field length limits.
const (
	maxNameLen  = 200
	maxShortLen = 128
	maxListLen  = 256
)

// ValidateTenant checks t; the error is an invalid_request naming the first
// bad field (e.g. "quotas.runs.run_create_qps").
func ValidateTenant(t store.Tenant) error {
	if !TenantIDPattern.MatchString(t.TenantID) {
		return errs.Field("tenant_id", "must match %s, got %q", TenantIDPattern, t.TenantID)
	}
	if t.Name == "" {
		return errs.Field("name", "required")
	}
	if len(t.Name) > maxNameLen {
		return errs.Field("name", "at most %d bytes", maxNameLen)
	}
	if t.Status != store.TenantActive && t.Status != store.TenantDisabled {
		return errs.Field("status", "must be active or disabled, got %q", t.Status)
	}
	if len(t.PlanTier) > maxShortLen {
		return errs.Field("plan_tier", "at most %d bytes", maxShortLen)
	}
	if len(t.DefaultPolicyID) > maxShortLen {
		return errs.Field("default_policy_id", "at most %d bytes", maxShortLen)
	}
	lists := []struct {
		field string
		v     []string
	}{
		{"entitlements.model_tiers_allowed", t.Entitlements.ModelTiersAllowed},
		{"entitlements.model_backends_allowed", t.Entitlements.ModelBackendsAllowed},
		{"entitlements.tool_ids_allowed", t.Entitlements.ToolIDsAllowed},
		{"metadata.tags", t.Metadata.Tags},
	}
	for _, l := range lists {
		if len(l.v) > maxListLen {
			return errs.Field(l.field, "at most %d entries", maxListLen)
		}
		for i, s := range l.v {
			if s == "" || len(s) > maxShortLen {
				return errs.Field(fmt.Sprintf("%s[%d]", l.field, i), "must be 1-%d bytes", maxShortLen)
			}
		}
	}
	if len(t.Metadata.BillingAccount) > maxShortLen {
		return errs.Field("metadata.billing_account", "at most %d bytes", maxShortLen)
	}
	q := t.Quotas
	nums := []struct {
		field string
		v     float64
	}{
		{"quotas.runs.max_concurrent_runs", float64(q.Runs.MaxConcurrentRuns)},
		{"quotas.runs.run_create_qps", q.Runs.RunCreateQPS},
		{"quotas.runs.run_create_burst", float64(q.Runs.RunCreateBurst)},
		{"quotas.runs.max_concurrent_streams", float64(q.Runs.MaxConcurrentStreams)},
		{"quotas.tools.tool_calls_per_minute", float64(q.Tools.ToolCallsPerMinute)},
		{"quotas.models.token_budget.max_tokens", float64(q.Models.TokenBudget.MaxTokens)},
		{"quotas.models.token_budget.max_cost_usd", q.Models.TokenBudget.MaxCostUSD},
		{"quotas.models.max_tokens_per_request", float64(q.Models.MaxTokensPerRequest)},
		{"quotas.models.max_requests_per_minute", float64(q.Models.MaxRequestsPerMinute)},
		{"quotas.storage.max_memory_bytes", float64(q.Storage.MaxMemoryBytes)},
		{"quotas.storage.max_artifact_bytes", float64(q.Storage.MaxArtifactBytes)},
	}
	for _, n := range nums {
		if n.v < 0 || math.IsNaN(n.v) || math.IsInf(n.v, 0) {
			return errs.Field(n.field, "must be a non-negative number, got %v", n.v)
		}
	}
	switch q.Models.TokenBudget.Window {
	case WindowMinute, WindowHour, WindowDay:
	default:
		return errs.Field("quotas.models.token_budget.window", "must be minute, hour or day, got %q", q.Models.TokenBudget.Window)
	}
	return nil
}

// StreamCap returns the tenant's cap on concurrent event streams: its
// quotas.runs.max_concurrent_streams, or nodeDefault
// (AGENTOS_QUOTA_MAX_STREAMS) when that is 0.
func StreamCap(t store.Tenant, nodeDefault int) int {
	if n := t.Quotas.Runs.MaxConcurrentStreams; n > 0 {
		return n
	}
	return nodeDefault
}

// WindowStart returns the start of the budget window containing t (UTC).
func WindowStart(window string, t time.Time) time.Time {
	t = t.UTC()
	switch window {
	case WindowMinute:
		return t.Truncate(time.Minute)
	case WindowHour:
		return t.Truncate(time.Hour)
	default:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
}
