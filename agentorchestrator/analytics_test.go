package agentorchestrator

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/store"
)

func TestUsageReport(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	defer b.close()
	ctx := context.Background()

	var ids []string
	for range 3 {
		id := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "hello"})
		b.waitStatus("tnt_a", id, store.RunCompleted)
		ids = append(ids, id)
	}
	other := b.createRun("tnt_b", "agt_echo", map[string]any{"input": "not tnt_a's"})
	b.waitStatus("tnt_b", other, store.RunCompleted)
	now := time.Now().UTC()
	require.NoError(t, b.db.RecordUsage(ctx,
		store.UsageRecord{UsageID: "use_1", TenantID: "tnt_a", PrincipalID: auth.AnonymousPrincipalID, RunID: ids[0], ModelID: "builtin/echo-fast",
			Backend: "builtin", Operation: "chat", InputTokens: 10, OutputTokens: 5, CostUSD: 0.25, Time: now},
		store.UsageRecord{UsageID: "use_2", TenantID: "tnt_a", PrincipalID: "usr_someone_else", ModelID: "builtin/echo-fast",
			Backend: "builtin", Operation: "chat", InputTokens: 1000, OutputTokens: 1000, CostUSD: 9, Time: now},
		store.UsageRecord{UsageID: "use_3", TenantID: "tnt_b", PrincipalID: auth.AnonymousPrincipalID, ModelID: "builtin/echo-fast",
			Backend: "builtin", Operation: "chat", InputTokens: 7000, OutputTokens: 7000, CostUSD: 70, Time: now}))

	since := url.QueryEscape(now.Add(-10 * time.Minute).Format(time.RFC3339))
	resp, out := b.do("GET", "/v1/analytics/usage?bucket=minute&since="+since, "tnt_a", nil)
	require.Equal(t, 200, resp.StatusCode, out)
	rep := out["report"].(map[string]any)
	require.Equal(t, "tnt_a", rep["tenant_id"])
	require.Equal(t, "minute", rep["bucket"])
	// Not a tenant admin: its own principal's model usage only; all of the
	// tenant's runs (as GET /v1/runs), none of another tenant's.
	require.Equal(t, "principal", rep["usage_scope"])
	tot := rep["totals"].(map[string]any)
	require.EqualValues(t, 3, tot["runs"])
	require.EqualValues(t, map[string]any{"completed": float64(3)}, tot["runs_by_status"])
	require.EqualValues(t, 1, tot["requests"])
	require.EqualValues(t, 15, tot["total_tokens"])
	require.InDelta(t, 0.25, tot["cost_usd"], 1e-9)
	lat := tot["run_latency_ms"].(map[string]any)
	require.EqualValues(t, 3, lat["count"])
	require.LessOrEqual(t, lat["p50"].(float64), lat["p99"].(float64))
	series := rep["series"].([]any)
	require.Len(t, series, 11, "ten minutes back, by the minute, both ends included")
	var runs float64
	for _, bk := range series {
		runs += bk.(map[string]any)["runs"].(float64)
	}
	require.EqualValues(t, 3, runs)
	require.NotNil(t, rep["budget"], "the seeded tenant has a token budget")
	require.NotContains(t, rep, "records")

	// One run's ledger records.
	resp, out = b.do("GET", "/v1/analytics/usage?run_id="+ids[0], "tnt_a", nil)
	require.Equal(t, 200, resp.StatusCode, out)
	recs := out["report"].(map[string]any)["records"].([]any)
	require.Len(t, recs, 1)
	require.Equal(t, "use_1", recs[0].(map[string]any)["usage_id"])

	// Bad input names the field and changes nothing.
	for q, field := range map[string]string{
		"bucket=week":                              "bucket",
		"since=yesterday":                          "since",
		"until=2020-01-01T00:00:00Z":               "since",
		"bucket=minute&since=2020-01-01T00:00:00Z": "bucket",
	} {
		resp, out = b.do("GET", "/v1/analytics/usage?"+q, "tnt_a", nil)
		require.Equal(t, 400, resp.StatusCode, q)
		require.Equal(t, field, out["error"].(map[string]any)["details"].(map[string]any)["field"], q)
	}
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	require.Nil(t, percentiles(nil))
	var d []float64
	for i := 100; i >= 1; i-- {
		d = append(d, float64(i))
	}
	p := percentiles(d)
	require.Equal(t, &latencyPercentiles{Count: 100, P50: 50, P95: 95, P99: 99}, p)
	require.Equal(t, float64(100), d[0], "the input is not reordered")
	require.Equal(t, &latencyPercentiles{Count: 1, P50: 7, P95: 7, P99: 7}, percentiles([]float64{7}))
}

func TestAuditVerifyNeedsAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	defer b.close()
	resp, out := b.do("GET", "/v1/admin/audit:verify", "tnt_a", nil)
	require.Equal(t, 403, resp.StatusCode, out)
}
