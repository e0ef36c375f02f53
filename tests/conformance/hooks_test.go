package conformance

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// TestHooksConformance validates the live responses of the webhook and
// schedule endpoints, success and error, against the orchestrator's spec.
func TestHooksConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	spec := LoadSpec(t, "agent-orchestrator")
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(rcv.Close)
	node := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_WEBHOOK_ALLOW=127.0.0.1"}})
	base := node.URL("orchestrator")
	user := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_demo"}}
	tadmin := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"Authorization": "Bearer " + node.Credentials().TenantAdmin.Token}}
	status := func(resp *http.Response, want int, body []byte) {
		t.Helper()
		require.Equal(t, want, resp.StatusCode, string(body))
	}

	t.Run("webhooks", func(t *testing.T) {
		resp, body := tadmin.Do(t, "PUT", "/v1/webhooks/endpoints/ops", map[string]any{"url": rcv.URL + "/ops", "events": []string{"all"}})
		status(resp, 200, body)
		resp, body = tadmin.Do(t, "PUT", "/v1/webhooks/endpoints/ops", map[string]any{"url": "not a url"})
		status(resp, 400, body)
		resp, body = user.Do(t, "PUT", "/v1/webhooks/endpoints/ops", map[string]any{"url": rcv.URL})
		status(resp, 403, body)
		resp, body = tadmin.Do(t, "GET", "/v1/webhooks/endpoints", nil)
		status(resp, 200, body)
		resp, body = tadmin.Do(t, "GET", "/v1/webhooks/secret", nil)
		status(resp, 200, body)
		resp, body = tadmin.Do(t, "POST", "/v1/webhooks/secret:rotate", nil)
		status(resp, 200, body)
		require.NotNil(t, JSON(t, body)["webhook_secret"].(map[string]any)["previous_valid_until"])

		resp, body = user.Do(t, "POST", "/v1/agents/agt_sample_echo_v1/runs", map[string]any{"input": "hello",
			"webhook": map[string]any{"url": rcv.URL + "/run", "events": []string{"terminal"}}})
		status(resp, 201, body)
		runID := JSON(t, body)["run"].(map[string]any)["run_id"].(string)
		resp, body = user.Do(t, "POST", "/v1/agents/agt_sample_echo_v1/runs", map[string]any{"input": "hello",
			"webhook": map[string]any{"url": "ftp://example.com"}})
		status(resp, 400, body)
		require.Eventually(t, func() bool {
			resp, body := user.Do(t, "GET", "/v1/runs/"+runID+"/webhook-deliveries", nil)
			status(resp, 200, body)
			n := 0
			for _, d := range JSON(t, body)["deliveries"].([]any) {
				if d.(map[string]any)["status"] == "succeeded" {
					n++
				}
			}
			// The run's own terminal delivery and the endpoint's, for every event.
			return n >= 2
		}, 30*time.Second, 50*time.Millisecond)
		resp, body = user.Do(t, "GET", "/v1/runs/run_nope/webhook-deliveries", nil)
		status(resp, 404, body)
		for i := range 9 {
			resp, body = tadmin.Do(t, "PUT", fmt.Sprintf("/v1/webhooks/endpoints/more-%d", i), map[string]any{"url": rcv.URL})
			status(resp, 200, body)
		}
		resp, body = tadmin.Do(t, "PUT", "/v1/webhooks/endpoints/one-too-many", map[string]any{"url": rcv.URL})
		status(resp, 429, body)
		resp, body = tadmin.Do(t, "PUT", "/v1/webhooks/endpoints/more-0", map[string]any{"url": rcv.URL, "events": []string{"terminal"}})
		status(resp, 200, body) // replacing one is not adding one
		for i := range 9 {
			resp, body = tadmin.Do(t, "DELETE", fmt.Sprintf("/v1/webhooks/endpoints/more-%d", i), nil)
			status(resp, 204, body)
		}
		resp, body = tadmin.Do(t, "DELETE", "/v1/webhooks/endpoints/ops", nil)
		status(resp, 204, body)
		resp, body = tadmin.Do(t, "DELETE", "/v1/webhooks/endpoints/ops", nil)
		status(resp, 404, body)
	})

	t.Run("schedules", func(t *testing.T) {
		resp, body := user.Do(t, "POST", "/v1/schedules", map[string]any{"agent_id": "agt_sample_echo_v1",
			"cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "input": "good morning", "misfire_policy": "catch_up", "catch_up_max": 2})
		status(resp, 201, body)
		id := JSON(t, body)["schedule"].(map[string]any)["schedule_id"].(string)
		resp, body = user.Do(t, "POST", "/v1/schedules", map[string]any{"agent_id": "agt_sample_echo_v1", "cron": "bad", "input": "x"})
		status(resp, 400, body)
		resp, body = user.Do(t, "POST", "/v1/schedules", map[string]any{"agent_id": "agt_nope", "every": "1h", "input": "x"})
		status(resp, 404, body)
		resp, body = user.Do(t, "GET", "/v1/schedules?limit=10", nil)
		status(resp, 200, body)
		resp, body = user.Do(t, "GET", "/v1/schedules?limit=0", nil)
		status(resp, 400, body)
		resp, body = user.Do(t, "GET", "/v1/schedules/"+id, nil)
		status(resp, 200, body)
		resp, body = user.Do(t, "POST", "/v1/schedules/"+id+":pause", nil)
		status(resp, 200, body)
		resp, body = user.Do(t, "POST", "/v1/schedules/"+id+":resume", nil)
		status(resp, 200, body)
		resp, body = user.Do(t, "POST", "/v1/schedules/sch_nope:pause", nil)
		status(resp, 404, body)
		resp, body = user.Do(t, "DELETE", "/v1/schedules/"+id, nil)
		status(resp, 204, body)
		resp, body = user.Do(t, "GET", "/v1/schedules/"+id, nil)
		status(resp, 404, body)
	})
}
