package tenancy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.Load(func(string) (string, bool) { return "", false }, t.TempDir()+"/none.env")
	require.NoError(t, err)
	cfg.Home = t.TempDir()
	require.NoError(t, cfg.Finish())
	return cfg
}

func requireField(t *testing.T, err error, field string) {
	t.Helper()
	require.Error(t, err)
	e := errs.As(err)
	require.Equal(t, errs.InvalidRequest, e.Code, "message: %s", e.Message)
	require.Equal(t, field, e.Details["field"], "message: %s", e.Message)
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.QuotaRunCreateQPS, cfg.QuotaConcurrentRuns, cfg.QuotaInvokeQPS = 3.5, 7, 2
	q := DefaultQuotas(cfg)
	require.Equal(t, store.Quotas{
		Runs:  store.RunQuotas{MaxConcurrentRuns: 7, RunCreateQPS: 3.5, RunCreateBurst: 7},
		Tools: store.ToolQuotas{ToolCallsPerMinute: 120},
		Models: store.ModelQuotas{
			TokenBudget:         store.TokenBudget{Window: "day", MaxTokens: 2_000_000, MaxCostUSD: 50},
			MaxTokensPerRequest: 8192, MaxRequestsPerMinute: 120,
		},
		Storage: store.StorageQuotas{MaxMemoryBytes: 10 << 20, MaxArtifactBytes: 1 << 30},
	}, q)

	q = DefaultQuotas(testConfig(t)) // env defaults 10 / 25 / 20
	require.Equal(t, 10.0, q.Runs.RunCreateQPS)
	require.Equal(t, 20, q.Runs.RunCreateBurst)
	require.Equal(t, 25, q.Runs.MaxConcurrentRuns)
	require.Equal(t, 1200, q.Models.MaxRequestsPerMinute)

	e := DefaultEntitlements()
	require.Equal(t, []string{"fast", "balanced", "premium", "embed"}, e.ModelTiersAllowed)
	require.Equal(t, []string{"*"}, e.ModelBackendsAllowed)
	require.Equal(t, []string{"*"}, e.ToolIDsAllowed)

	tn := NewTenant("tnt_acme", "Acme", cfg)
	require.NoError(t, ValidateTenant(tn))
	require.Equal(t, store.TenantActive, tn.Status)
	require.False(t, tn.CreatedAt.IsZero())
	require.Equal(t, q.Models.TokenBudget, tn.Quotas.Models.TokenBudget)
}

func TestValidateTenant(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	tests := []struct {
		field  string
		mutate func(*store.Tenant)
	}{
		{"tenant_id", func(t *store.Tenant) { t.TenantID = "acme" }},
		{"tenant_id", func(t *store.Tenant) { t.TenantID = "tnt_ACME" }},
		{"tenant_id", func(t *store.Tenant) { t.TenantID = "tnt_" + strings.Repeat("a", 61) }},
		{"name", func(t *store.Tenant) { t.Name = "" }},
		{"status", func(t *store.Tenant) { t.Status = "paused" }},
		{"quotas.runs.run_create_qps", func(t *store.Tenant) { t.Quotas.Runs.RunCreateQPS = -1 }},
		{"quotas.runs.max_concurrent_runs", func(t *store.Tenant) { t.Quotas.Runs.MaxConcurrentRuns = -1 }},
		{"quotas.runs.max_concurrent_streams", func(t *store.Tenant) { t.Quotas.Runs.MaxConcurrentStreams = -1 }},
		{"quotas.models.token_budget.window", func(t *store.Tenant) { t.Quotas.Models.TokenBudget.Window = "week" }},
		{"quotas.models.token_budget.max_cost_usd", func(t *store.Tenant) { t.Quotas.Models.TokenBudget.MaxCostUSD = -0.5 }},
		{"quotas.storage.max_memory_bytes", func(t *store.Tenant) { t.Quotas.Storage.MaxMemoryBytes = -5 }},
		{"entitlements.tool_ids_allowed[1]", func(t *store.Tenant) { t.Entitlements.ToolIDsAllowed = []string{"tool.echo", ""} }},
	}
	for _, tc := range tests {
		tn := NewTenant("tnt_acme", "Acme", cfg)
		tc.mutate(&tn)
		requireField(t, ValidateTenant(tn), tc.field)
	}
	ok := NewTenant("tnt_"+strings.Repeat("a", 60), "x", cfg)
	require.NoError(t, ValidateTenant(ok))
}

func TestMergePatch(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	base := NewTenant("tnt_acme", "Acme", cfg)
	base.DefaultPolicyID = "pol_1"
	base.Metadata = store.Metadata{Tags: []string{"a"}, BillingAccount: "ba_1"}

	t.Run("quotas merge field by field", func(t *testing.T) {
		t.Parallel()
		got, err := MergePatch(base, json.RawMessage(`{"quotas":{"runs":{"max_concurrent_runs":3}}}`))
		require.NoError(t, err)
		want := base
		want.Quotas.Runs.MaxConcurrentRuns = 3
		require.Equal(t, want, got)
	})
	t.Run("several fields, wrapped", func(t *testing.T) {
		t.Parallel()
		got, err := MergePatch(base, json.RawMessage(`{"tenant_patch":{"name":"Acme Inc","status":"disabled",
			"plan_tier":"gold","entitlements":{"tool_ids_allowed":["tool.echo"]},
			"quotas":{"models":{"token_budget":{"window":"hour"}}},"metadata":{"tags":["b","c"]},
			"tenant_id":"tnt_acme","created_at":"1999-01-01T00:00:00Z","unknown":1}}`))
		require.NoError(t, err)
		require.Equal(t, "Acme Inc", got.Name)
		require.Equal(t, store.TenantDisabled, got.Status)
		require.Equal(t, "gold", got.PlanTier)
		require.Equal(t, []string{"tool.echo"}, got.Entitlements.ToolIDsAllowed)
		require.Equal(t, base.Entitlements.ModelTiersAllowed, got.Entitlements.ModelTiersAllowed)
		require.Equal(t, "hour", got.Quotas.Models.TokenBudget.Window)
		require.Equal(t, base.Quotas.Models.TokenBudget.MaxTokens, got.Quotas.Models.TokenBudget.MaxTokens)
		require.Equal(t, []string{"b", "c"}, got.Metadata.Tags)
		require.Equal(t, "ba_1", got.Metadata.BillingAccount)
		require.Equal(t, base.CreatedAt, got.CreatedAt)
	})
	t.Run("null clears a string", func(t *testing.T) {
		t.Parallel()
		got, err := MergePatch(base, json.RawMessage(`{"default_policy_id":null}`))
		require.NoError(t, err)
		require.Equal(t, "", got.DefaultPolicyID)
	})
	t.Run("input unchanged", func(t *testing.T) {
		t.Parallel()
		b := NewTenant("tnt_acme", "Acme", cfg)
		_, err := MergePatch(b, json.RawMessage(`{"entitlements":{"model_tiers_allowed":["fast"]}}`))
		require.NoError(t, err)
		require.Equal(t, []string{"fast", "balanced", "premium", "embed"}, b.Entitlements.ModelTiersAllowed)
	})

	bad := []struct {
		body  string
		field string
	}{
		{`{"name":5}`, "name"},
		{`{"status":"paused"}`, "status"},
		{`{"name":null}`, "name"},
		{`{"quotas":{"runs":{"max_concurrent_runs":"ten"}}}`, "quotas.runs.max_concurrent_runs"},
		{`{"quotas":{"runs":{"max_concurrent_runs":2.5}}}`, "quotas.runs.max_concurrent_runs"},
		{`{"quotas":{"runs":{"max_concurrent_streams":"many"}}}`, "quotas.runs.max_concurrent_streams"},
		{`{"quotas":{"runs":{"run_create_qps":-1}}}`, "quotas.runs.run_create_qps"},
		{`{"quotas":{"runs":{"run_create_burst":null}}}`, "quotas.runs.run_create_burst"},
		{`{"quotas":{"runs":5}}`, "quotas.runs"},
		{`{"quotas":[]}`, "quotas"},
		{`{"entitlements":{"tool_ids_allowed":"tool.echo"}}`, "entitlements.tool_ids_allowed"},
		{`{"entitlements":{"tool_ids_allowed":[1]}}`, "entitlements.tool_ids_allowed[0]"},
		{`{"quotas":{"models":{"token_budget":{"window":"year"}}}}`, "quotas.models.token_budget.window"},
		{`{"tenant_id":"tnt_other"}`, "tenant_id"},
		{`[]`, "body"},
		{`{"name":`, "body"},
		{``, "body"},
		{`{"name":"x"} {}`, "body"},
	}
	for _, tc := range bad {
		_, err := MergePatch(base, json.RawMessage(tc.body))
		requireField(t, err, tc.field)
	}
}

func FuzzMergePatch(f *testing.F) {
	for _, s := range []string{
		`{"quotas":{"runs":{"max_concurrent_runs":3}}}`, `{"name":"x","status":"disabled"}`,
		`{"tenant":{"entitlements":{"tool_ids_allowed":["a"]}}}`, `{"metadata":{"tags":null}}`,
		`{"quotas":{"models":{"token_budget":{"max_tokens":1e300}}}}`, `{"default_policy_id":null}`, `{}`, `[`,
	} {
		f.Add([]byte(s))
	}
	cfg, err := config.Load(func(string) (string, bool) { return "", false }, "/nonexistent/.agentos.env")
	require.NoError(f, err)
	require.NoError(f, cfg.Finish())
	base := NewTenant("tnt_fuzz", "Fuzz", cfg)
	before, _ := json.Marshal(base)
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := MergePatch(base, body)
		after, _ := json.Marshal(base)
		require.Equal(t, string(before), string(after), "input tenant modified")
		if err != nil {
			require.Equal(t, errs.InvalidRequest, errs.CodeOf(err), err.Error())
			return
		}
		require.NoError(t, ValidateTenant(got))
		require.Equal(t, base.TenantID, got.TenantID)
		require.Equal(t, base.CreatedAt, got.CreatedAt)
	})
}

func TestWindowStart(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 5, 6, 7, 8, 9, 10, time.UTC)
	require.Equal(t, time.Date(2030, 5, 6, 7, 8, 0, 0, time.UTC), WindowStart(WindowMinute, at))
	require.Equal(t, time.Date(2030, 5, 6, 7, 0, 0, 0, time.UTC), WindowStart(WindowHour, at))
	require.Equal(t, time.Date(2030, 5, 6, 0, 0, 0, 0, time.UTC), WindowStart(WindowDay, at))
}
