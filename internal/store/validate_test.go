package store_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// requireField asserts err is an invalid_request naming field.
func requireField(t *testing.T, err error, field string) {
	t.Helper()
	var e *errs.Error
	require.True(t, errors.As(err, &e), "want *errs.Error, got %v", err)
	require.Equal(t, errs.InvalidRequest, e.Code)
	require.Equal(t, field, e.Details["field"])
	require.Contains(t, e.Message, field+": ")
}

func TestValidate(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	okRun := store.Run{TenantID: "t", AgentID: "a"}
	reserve := store.ReserveParams{TenantID: "t", Window: "hour", WindowStart: start}
	cases := []struct {
		name  string
		err   error
		field string // "" = valid
	}{
		{"required first empty", store.Required("a", "x", "b", "", "c", ""), "b"},
		{"required all set", store.Required("a", "x"), ""},
		{"tenant", store.ValidateTenantRecord(store.Tenant{}), "tenant_id"},
		{"tenant ok", store.ValidateTenantRecord(store.Tenant{TenantID: "t"}), ""},
		{"token secret", store.Token{TenantID: "t", TokenID: "k"}.Validate(), "secret_hash"},
		{"agent id", store.Agent{TenantID: "t"}.Validate(), "agent_id"},
		{"run agent", store.CreateRunParams{Run: store.Run{TenantID: "t"}}.Validate(), "agent_id"},
		{"run empty status is queued", store.CreateRunParams{Run: okRun}.Validate(), ""},
		{"run status", store.CreateRunParams{Run: store.Run{TenantID: "t", AgentID: "a", Status: "odd"}}.Validate(), "status"},
		{"run ttl", store.CreateRunParams{Run: okRun, IdempotencyTTL: -1}.Validate(), "idempotency_ttl"},
		{"change run id", store.RunChange{TenantID: "t"}.Validate(), "run_id"},
		{"change status", store.RunChange{TenantID: "t", RunID: "r", Run: &store.Run{}}.Validate(), "status"},
		{"change step", store.RunChange{TenantID: "t", RunID: "r", Steps: []store.Step{{StepID: "s"}, {}}}.Validate(), "steps[1].step_id"},
		{"change ok", store.RunChange{TenantID: "t", RunID: "r", Run: &store.Run{Status: store.RunRunning}}.Validate(), ""},
		{"list runs", store.ListRunsParams{}.Validate(), "tenant_id"},
		{"reserve ok", reserve.Validate(), ""},
		{"reserve window", store.ReserveParams{TenantID: "t", Window: "week", WindowStart: start}.Validate(), "window"},
		{"reserve start", store.ReserveParams{TenantID: "t", Window: "day"}.Validate(), "window_start"},
		{"reserve tokens", func() error { p := reserve; p.Tokens = -1; return p.Validate() }(), "tokens"},
		{"reserve cost inf", func() error { p := reserve; p.CostUSD = math.Inf(1); return p.Validate() }(), "cost_usd"},
		{"reserve max tokens", func() error { p := reserve; p.MaxTokens = -1; return p.Validate() }(), "max_tokens"},
		{"reserve max cost nan", func() error { p := reserve; p.MaxCostUSD = math.NaN(); return p.Validate() }(), "max_cost_usd"},
		{"settle tokens", store.ValidateSettlement(-1, 0), "tokens"},
		{"settle cost", store.ValidateSettlement(0, math.NaN()), "cost_usd"},
		{"settle ok", store.ValidateSettlement(1, 0.5), ""},
		{"usage tenant", store.UsageRecord{}.Validate(), "tenant_id"},
		{"usage cost", store.UsageRecord{TenantID: "t", CostUSD: math.Inf(-1)}.Validate(), "cost_usd"},
		{"usage filter", store.UsageFilter{}.Validate(), "tenant_id"},
		{"kv key", store.ValidateKVPut("t", ""), "key"},
		{"forward run", store.Forward{TenantID: "t"}.Validate(), "run_id"},
		{"ingested event id", store.IngestedEvent{Event: store.Event{TenantID: "t"}}.Validate(), "event_id"},
	}
	for _, c := range cases {
		if c.field == "" {
			require.NoError(t, c.err, c.name)
			continue
		}
		requireField(t, c.err, c.field)
	}
}

func TestRunStatusValid(t *testing.T) {
	t.Parallel()
	for _, s := range []store.RunStatus{store.RunQueued, store.RunRunning, store.RunCompleted, store.RunFailed, store.RunCanceled} {
		require.True(t, s.Valid(), s)
	}
	require.False(t, store.RunStatus("").Valid())
	require.False(t, store.RunStatus("paused").Valid())
	require.True(t, store.ValidWindow("minute"))
	require.False(t, store.ValidWindow("week"))
}
