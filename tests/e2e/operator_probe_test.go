package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestValidateUsesItsOwnProbeTenant: once the user's tenant has spent its
// daily token budget, its runs fail, yet validate and redeploy pass: their
// smoke run is made in the probe tenant tnt_agentos_probe, which has its
// own budget.
func TestValidateUsesItsOwnProbeTenant(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	t.Parallel()
	n := opNewNode(t)
	out, code := n.run("up")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "tnt_agentos_probe")

	out, code = n.run("tenants", "update", "tnt_demo", "--token-budget-window", "day", "--token-budget-max-tokens", "1")
	require.Equal(t, 0, code, out)
	// Tenants are cached for a second by each service.
	require.Eventually(t, func() bool {
		out, code = n.run("run", "agt_sample_echo_v1", "spend it", "--json")
		return code == 1 && strings.Contains(out, "quota_exceeded")
	}, 20*time.Second, 500*time.Millisecond, "the user's tenant has spent its budget: %s", out)

	out, code = n.run("validate")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "probe tenant ready")
	out, code = n.run("redeploy")
	require.Equal(t, 0, code, out)

	out, code = n.run("tenants", "get", "tnt_agentos_probe", "--json")
	require.Equal(t, 0, code, out)
	var got struct {
		Tenant struct {
			Status string `json:"status"`
			Quotas struct {
				Models struct {
					TokenBudget struct {
						Window    string `json:"window"`
						MaxTokens int64  `json:"max_tokens"`
					} `json:"token_budget"`
				} `json:"models"`
			} `json:"quotas"`
		} `json:"tenant"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Equal(t, "active", got.Tenant.Status)
	require.Equal(t, "day", got.Tenant.Quotas.Models.TokenBudget.Window)
	require.EqualValues(t, 2_000_000, got.Tenant.Quotas.Models.TokenBudget.MaxTokens)
}
