package conformance

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// TestArtifactsConformance starts a real node, makes a run store an
// artifact (an http.fetch body past the threshold) and validates the
// artifact endpoints' live responses, success and error, against
// docs/api/agent-orchestrator/openapi.yaml.
func TestArtifactsConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	spec := LoadSpec(t, "agent-orchestrator")
	page := strings.Repeat("conformance artifact body\n", 400)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(upstream.Close)
	node := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1",
		"AGENTOS_HTTP_FETCH_ARTIFACT_THRESHOLD=4096"}})
	base := node.URL("orchestrator")
	user := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_demo"}}
	admin := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token,
		"X-Tenant-Id": "tnt_demo"}}
	status := func(resp *http.Response, want int, body []byte) {
		t.Helper()
		require.Equal(t, want, resp.StatusCode, string(body))
	}

	resp, body := admin.Do(t, "PUT", "/v1/admin/agents/agt_conf_fetch", map[string]any{"agent": map[string]any{"name": "Fetch",
		"model_ref": "tier:fast", "tools": []string{"tool.http.fetch"}}})
	status(resp, 201, body)
	resp, body = admin.Do(t, "POST", "/v1/admin/tenants", map[string]any{"tenant_id": "tnt_conf_art_b", "name": "B"})
	status(resp, 201, body)
	other := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_conf_art_b"}}

	resp, body = user.Do(t, "POST", "/v1/agents/agt_conf_fetch/runs", map[string]any{"input": upstream.URL + "/page.txt"})
	status(resp, 201, body)
	runID := JSON(t, body)["run"].(map[string]any)["run_id"].(string)
	require.Eventually(t, func() bool {
		resp, body := user.Do(t, "GET", "/v1/runs/"+runID, nil)
		status(resp, 200, body)
		return JSON(t, body)["run"].(map[string]any)["status"] == "completed"
	}, 60*time.Second, 50*time.Millisecond)

	resp, body = user.Do(t, "GET", "/v1/runs/"+runID+"/artifacts", nil)
	status(resp, 200, body)
	list := JSON(t, body)["artifacts"].([]any)
	require.Len(t, list, 1)
	artID := list[0].(map[string]any)["artifact_id"].(string)

	resp, body = user.Do(t, "GET", "/v1/artifacts/"+artID, nil)
	status(resp, 200, body)
	resp, body = user.Do(t, "GET", "/v1/artifacts/"+artID+"/content", nil)
	status(resp, 200, body)
	require.Equal(t, page, string(body))

	for _, path := range []string{"/v1/artifacts/" + artID, "/v1/artifacts/" + artID + "/content", "/v1/runs/" + runID + "/artifacts",
		"/v1/artifacts/art_missing", "/v1/runs/run_missing/artifacts"} {
		c := other
		if strings.Contains(path, "missing") {
			c = user
		}
		resp, body = c.Do(t, "GET", path, nil)
		status(resp, 404, body)
	}
}
