package apiclient

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

// TestScheduleAndWebhookMethods checks each method's request line and
// body, and that answers (and error answers) decode.
func TestScheduleAndWebhookMethods(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		bodies = append(bodies, body)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/schedules/sch_gone":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"schedule sch_gone not found","retryable":false,"details":{}},"correlation_id":"corr_1"}`))
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == "/v1/schedules" && r.Method == http.MethodGet:
			_, _ = w.Write([]byte(`{"schedules":[{"schedule_id":"sch_1","status":"active"}],"next_cursor":"sch_1"}`))
		case r.URL.Path == "/v1/webhooks/endpoints":
			_, _ = w.Write([]byte(`{"endpoints":[{"endpoint_id":"ops","url":"https://x","events":"all"}]}`))
		case r.URL.Path == "/v1/webhooks/endpoints/ops":
			_, _ = w.Write([]byte(`{"endpoint":{"endpoint_id":"ops","url":"https://x","events":"all"}}`))
		default:
			_, _ = w.Write([]byte(`{"schedule":{"schedule_id":"sch_1","status":"paused"}}`))
		}
	}))
	t.Cleanup(srv.Close)
	c := &Client{BaseURL: srv.URL, TenantID: "tnt_a"}
	ctx := t.Context()

	sc, err := c.CreateSchedule(ctx, ScheduleRequest{AgentID: "agt_1", Every: "1m", Input: "hi", MisfirePolicy: "catch_up", CatchUpMax: 2})
	require.NoError(t, err)
	require.Equal(t, "sch_1", sc.ScheduleID)
	list, next, err := c.ListSchedules(ctx, "sch_0", 10)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "sch_1", next)
	_, err = c.PauseSchedule(ctx, "sch_1")
	require.NoError(t, err)
	_, err = c.ResumeSchedule(ctx, "sch_1")
	require.NoError(t, err)
	_, err = c.GetSchedule(ctx, "sch_gone")
	require.True(t, errors.Is(err, errs.ErrNotFound), "%v", err)
	require.NoError(t, c.DeleteSchedule(ctx, "sch_1"))
	ep, err := c.PutWebhookEndpoint(ctx, "ops", "https://x", "all")
	require.NoError(t, err)
	require.Equal(t, "all", ep.Events)
	eps, err := c.ListWebhookEndpoints(ctx)
	require.NoError(t, err)
	require.Len(t, eps, 1)
	require.NoError(t, c.DeleteWebhookEndpoint(ctx, "ops"))

	require.Equal(t, []string{
		"POST /v1/schedules", "GET /v1/schedules?cursor=sch_0&limit=10", "POST /v1/schedules/sch_1:pause",
		"POST /v1/schedules/sch_1:resume", "GET /v1/schedules/sch_gone", "DELETE /v1/schedules/sch_1",
		"PUT /v1/webhooks/endpoints/ops", "GET /v1/webhooks/endpoints", "DELETE /v1/webhooks/endpoints/ops",
	}, seen)
	require.Equal(t, map[string]any{"agent_id": "agt_1", "every": "1m", "input": "hi", "misfire_policy": "catch_up",
		"catch_up_max": float64(2)}, bodies[0])
	require.Equal(t, map[string]any{"url": "https://x", "events": []any{"all"}}, bodies[6])
}
