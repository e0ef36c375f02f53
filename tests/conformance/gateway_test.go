package conformance

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// TestGatewayConformance validates the gateway's own endpoints against
// docs/api/gateway/openapi.yaml, and responses proxied through it against
// the specs of the services that answer them. The node runs orchestrator
// and model-policy but no federation, so the federation pool has no
// healthy replica.
func TestGatewayConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	node := testnode.Start(t, testnode.Options{})
	node.StartService("gateway")
	base := node.URL("gateway")
	gw := &Client{Spec: LoadSpec(t, "gateway"), BaseURL: base}

	resp, body := gw.Do(t, "GET", "/healthz", nil)
	require.Equal(t, 200, resp.StatusCode, string(body))
	require.Equal(t, "gateway", JSON(t, body)["service"])
	resp, body = gw.Do(t, "GET", "/metrics", nil)
	require.Equal(t, 200, resp.StatusCode, string(body))
	require.Contains(t, string(body), "agentos_gateway_upstream_healthy")

	resp, body = gw.Do(t, "GET", "/readyz", nil)
	require.Equal(t, 503, resp.StatusCode, string(body))
	details := JSON(t, body)["error"].(map[string]any)["details"].(map[string]any)
	require.Equal(t, []any{"federation"}, details["failing"])

	// Proxied responses are the services' own, headers included.
	user := map[string]string{"X-Tenant-Id": "tnt_demo"}
	orch := &Client{Spec: LoadSpec(t, "agent-orchestrator"), BaseURL: base, Headers: user}
	resp, body = orch.Do(t, "GET", "/v1/agents", nil)
	require.Equal(t, 200, resp.StatusCode, string(body))
	resp, body = orch.Do(t, "GET", "/v1/runs/run_nope", nil)
	require.Equal(t, 404, resp.StatusCode, string(body))
	mp := &Client{Spec: LoadSpec(t, "model-policy"), BaseURL: base, Headers: user}
	resp, body = mp.Do(t, "GET", "/v1/models", nil)
	require.Equal(t, 200, resp.StatusCode, string(body))
	resp, body = mp.Do(t, "GET", "/openai/v1/models", nil)
	require.Equal(t, 200, resp.StatusCode, string(body))

	// A pool with no healthy replica: the gateway's own envelope.
	req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/federation/health", nil)
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 503, resp.StatusCode)
	var env struct {
		Error struct {
			Code    string         `json:"code"`
			Details map[string]any `json:"details"`
		} `json:"error"`
		CorrelationID string `json:"correlation_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&env))
	require.Equal(t, "dependency_unavailable", env.Error.Code)
	require.Equal(t, "federation", env.Error.Details["dependency"])
	require.Equal(t, resp.Header.Get("X-Correlation-Id"), env.CorrelationID)
}
