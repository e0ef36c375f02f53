package agentorchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
)

func TestRunCompletesWithToolAndModelCalls(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": map[string]any{"type": "text", "text": "hello"}})
	evs := b.streamEvents("tnt_a", runID)
	requireGapless(t, evs, 1)
	require.Equal(t, []string{
		store.EventRunCreated,
		store.EventStepStarted, store.EventModelRequested, store.EventModelCompleted,
		store.EventStepStarted, store.EventToolCallRequested, store.EventToolCallCompleted,
		store.EventStepStarted, store.EventModelRequested, store.EventModelCompleted,
		store.EventRunCompleted,
	}, eventTypes(evs))
	for _, e := range evs {
		require.Equal(t, "tnt_a", e.TenantID)
		require.Equal(t, runID, e.RunID)
		require.NotEmpty(t, e.Trace.Traceparent)
	}
	var done struct {
		Output store.Output `json:"output"`
	}
	require.NoError(t, json.Unmarshal(evs[len(evs)-1].Payload, &done))
	require.Equal(t, `Echo: {"text":"hello"}`, done.Output.Text)

	resp, out := b.do("GET", "/v1/runs/"+runID, "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	run := out["run"].(map[string]any)
	require.Equal(t, "completed", run["status"])
	require.EqualValues(t, 1, run["summary"].(map[string]any)["tool_calls_total"])
	require.EqualValues(t, 2, run["summary"].(map[string]any)["model_calls_total"])
	require.NotEmpty(t, out["correlation_id"])

	// Resume after sequence 5 with Last-Event-ID, and JSON form.
	tail := b.streamEvents("tnt_a", runID, "Last-Event-ID", "5")
	requireGapless(t, tail, 6)
	resp, out = b.do("GET", "/v1/runs/"+runID+"/events?after_sequence=9", "tnt_a", nil, "Accept", "application/json")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, out["events"], 2)
	require.EqualValues(t, 11, out["next_after_sequence"])
}

func TestRunInputShapesAndValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	b.createRun("tnt_a", "agt_echo", map[string]any{"input": "plain string"})
	cases := []struct {
		name   string
		body   string
		status int
		field  string
	}{
		{"missing input", `{}`, 400, "input"},
		{"empty text", `{"input":{"type":"text","text":""}}`, 400, "input.text"},
		{"wrong type", `{"input":42}`, 400, "input"},
		{"malformed", `{"input":`, 400, "body"},
		{"bad priority", `{"input":"x","run_options":{"priority":"urgent"}}`, 400, "run_options.priority"},
		{"max_steps type", `{"input":"x","run_options":{"max_steps":"many"}}`, 400, "run_options.max_steps"},
		{"timeout range", `{"input":"x","run_options":{"timeout_ms":0}}`, 400, "run_options.timeout_ms"},
		{"tool not of agent", `{"input":"x","tooling":{"tool_allowlist":["tool.kv.get"]}}`, 400, "tooling.tool_allowlist[0]"},
	}
	for _, tc := range cases {
		resp, out := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", tc.body)
		require.Equal(t, tc.status, resp.StatusCode, tc.name)
		e := out["error"].(map[string]any)
		require.Equal(t, "invalid_request", e["code"], tc.name)
		require.Equal(t, tc.field, e["details"].(map[string]any)["field"], tc.name)
	}
	resp, out := b.do("POST", "/v1/agents/agt_missing/runs", "tnt_a", `{"input":"x"}`)
	require.Equal(t, 404, resp.StatusCode)
	require.Equal(t, "not_found", out["error"].(map[string]any)["code"])
	resp, _ = b.do("POST", "/v1/agents/agt_echo/runs", "", `{"input":"x"}`)
	require.Equal(t, 401, resp.StatusCode)
	// Nothing was half-written by the rejected requests.
	runs, _, err := b.db.ListRuns(context.Background(), store.ListRunsParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, runs, 1)
}

func TestAllowlistOutsideEntitlementsIsForbidden(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{tenantFn: func(tn *store.Tenant) { tn.Entitlements.ToolIDsAllowed = []string{"tool.kv.get"} }})
	resp, out := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", `{"input":"x","tooling":{"tools":["tool.echo"]}}`)
	require.Equal(t, 403, resp.StatusCode, out)
	require.Equal(t, "forbidden", out["error"].(map[string]any)["code"])
}

// A retry of an admitted create gets its run even after the agent changed:
// its defaults (not part of what the client sent) or its status.
func TestIdempotentRetryAfterAgentChanges(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	ctx := t.Context()
	body := `{"input":"once","idempotency_key":"k-agent"}`
	resp, first := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", body)
	require.Equal(t, 201, resp.StatusCode)
	runID := first["run"].(map[string]any)["run_id"]

	agent, err := b.db.GetAgent(ctx, "tnt_a", "agt_echo")
	require.NoError(t, err)
	agent.Version++
	agent.Defaults.MaxSteps, agent.Defaults.TimeoutMs = 3, 4321
	require.NoError(t, b.db.PutAgent(ctx, agent))
	resp, again := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", body)
	require.Equal(t, 200, resp.StatusCode, "new defaults, same request")
	require.Equal(t, runID, again["run"].(map[string]any)["run_id"])

	agent.Version++
	agent.Status = "disabled"
	require.NoError(t, b.db.PutAgent(ctx, agent))
	resp, again = b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", body)
	require.Equal(t, 200, resp.StatusCode, "the agent no longer accepts runs, but this one was admitted")
	require.Equal(t, runID, again["run"].(map[string]any)["run_id"])
	resp, _ = b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", `{"input":"new","idempotency_key":"k-new"}`)
	require.Equal(t, 409, resp.StatusCode, "a new request is refused")

	// A new run without max_steps/timeout_ms gets the agent's defaults.
	agent.Version++
	agent.Status = store.AgentActive
	require.NoError(t, b.db.PutAgent(ctx, agent))
	resp, fresh := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", `{"input":"defaults"}`)
	require.Equal(t, 201, resp.StatusCode)
	opts := fresh["run"].(map[string]any)["run_options"].(map[string]any)
	require.EqualValues(t, 3, opts["max_steps"])
	require.EqualValues(t, 4321, opts["timeout_ms"])
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	// Every create attempt, replays included, spends run-create rate; this
	// test is about idempotency, so the rate is out of the way.
	b := setup(t, bundleOpts{tenantFn: func(tn *store.Tenant) { tn.Quotas.Runs.RunCreateQPS, tn.Quotas.Runs.RunCreateBurst = 1000, 1000 }})
	body := `{"input":"same","idempotency_key":"k1"}`
	resp, first := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", body)
	require.Equal(t, 201, resp.StatusCode)
	resp, again := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", `{"input":{"type":"text","text":"same"}}`, "Idempotency-Key", "k1")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "true", resp.Header.Get("Idempotent-Replayed"))
	require.Equal(t, first["run"].(map[string]any)["run_id"], again["run"].(map[string]any)["run_id"])
	resp, out := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", `{"input":"different"}`, "Idempotency-Key", "k1")
	require.Equal(t, 409, resp.StatusCode)
	require.Equal(t, "conflict", out["error"].(map[string]any)["code"])
	// The same key in another tenant is another run.
	resp, other := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_b", body)
	require.Equal(t, 201, resp.StatusCode)
	require.NotEqual(t, first["run"].(map[string]any)["run_id"], other["run"].(map[string]any)["run_id"])

	// Concurrent duplicates: exactly one run.
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, out := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", `{"input":"burst"}`, "Idempotency-Key", "k-burst")
			if resp.StatusCode == 200 || resp.StatusCode == 201 {
				ids <- out["run"].(map[string]any)["run_id"].(string)
			} else {
				ids <- fmt.Sprint("status ", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]int{}
	for id := range ids {
		seen[id]++
	}
	require.Len(t, seen, 1, "%v", seen)
}

func TestCrossTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "secret"})
	for _, path := range []string{"/v1/runs/" + runID, "/v1/runs/" + runID + "/events"} {
		resp, out := b.do("GET", path, "tnt_b", nil)
		require.Equal(t, 404, resp.StatusCode, path)
		require.Equal(t, "not_found", out["error"].(map[string]any)["code"])
	}
	resp, _ := b.do("POST", "/v1/runs/"+runID+":cancel", "tnt_b", nil)
	require.Equal(t, 404, resp.StatusCode)
	resp, out := b.do("GET", "/v1/runs", "tnt_b", nil)
	require.Equal(t, 200, resp.StatusCode)
	require.Empty(t, out["runs"])
}

func TestCancelStopsInFlightTool(t *testing.T) {
	t.Parallel()
	slow := newBlockingTool("tool.test.block", false)
	b := setup(t, bundleOpts{extra: []tools.Tool{slow}})
	runID := b.createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "wait"})
	<-slow.started
	start := time.Now()
	resp, out := b.do("POST", "/v1/runs/"+runID+":cancel", "tnt_a", `{"reason":"user asked"}`)
	require.Equal(t, 200, resp.StatusCode, out)
	require.Equal(t, "canceled", out["run"].(map[string]any)["status"])
	require.Eventually(t, func() bool { return slow.ctxErr.Load() != nil }, 5*time.Second, 5*time.Millisecond)
	t.Logf("tool context canceled %s after the cancel request", time.Since(start))
	evs := b.streamEvents("tnt_a", runID)
	requireGapless(t, evs, 1)
	require.Equal(t, store.EventRunCanceled, evs[len(evs)-1].Type)
	resp, out = b.do("POST", "/v1/runs/"+runID+":cancel", "tnt_a", nil)
	require.Equal(t, 409, resp.StatusCode)
	require.Equal(t, "conflict", out["error"].(map[string]any)["code"])
	resp, _ = b.do("POST", "/v1/runs/"+runID+":explode", "tnt_a", nil)
	require.Equal(t, 404, resp.StatusCode)
}

func TestRunTimeoutAndMaxSteps(t *testing.T) {
	t.Parallel()
	slow := newBlockingTool("tool.test.block", false)
	b := setup(t, bundleOpts{extra: []tools.Tool{slow}})
	runID := b.createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "wait", "run_options": map[string]any{"timeout_ms": 200}})
	run := b.waitStatus("tnt_a", runID, store.RunFailed)
	require.Equal(t, "timeout", run.Error.Code)

	looping := &scriptedModel{}
	looping.alwaysTool.Store(true)
	b2 := setup(t, bundleOpts{model: looping})
	runID = b2.createRun("tnt_a", "agt_echo", map[string]any{"input": "loop", "run_options": map[string]any{"max_steps": 3}})
	run = b2.waitStatus("tnt_a", runID, store.RunFailed)
	require.Equal(t, codeMaxSteps, run.Error.Code)
	require.Equal(t, 3, run.Summary.ModelCallsTotal)
}

// An agent's explicit model_retries still caps the retries of a
// dependency failure: after them the run fails with the retryable error.
func TestModelUnavailableFailsRunAfterModelRetries(t *testing.T) {
	t.Parallel()
	m := &scriptedModel{}
	m.fail.Store(errs.E(errs.DependencyUnavailable, "model-policy unreachable"))
	b := setup(t, bundleOpts{model: m})
	ctx := context.Background()
	a, err := b.db.GetAgent(ctx, "tnt_a", "agt_echo")
	require.NoError(t, err)
	a.Defaults.ModelRetries = 2
	require.NoError(t, b.db.PutAgent(ctx, a))
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "x"})
	run := b.waitStatus("tnt_a", runID, store.RunFailed)
	require.Equal(t, "dependency_unavailable", run.Error.Code)
	require.True(t, run.Error.Retryable)
	require.EqualValues(t, 3, m.calls.Load())
	evs := b.streamEvents("tnt_a", runID)
	require.Equal(t, store.EventRunFailed, evs[len(evs)-1].Type)
	for _, ev := range evs {
		if ev.Type == store.EventModelCompleted {
			var p map[string]any
			require.NoError(t, json.Unmarshal(ev.Payload, &p))
			require.EqualValues(t, 2, p["retries"])
		}
	}
}

func TestRunCreateRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{tenantFn: func(tn *store.Tenant) { tn.Quotas.Runs.RunCreateQPS = 0.01; tn.Quotas.Runs.RunCreateBurst = 1 }})
	b.createRun("tnt_a", "agt_echo", map[string]any{"input": "1"})
	resp, out := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", `{"input":"2"}`)
	require.Equal(t, 429, resp.StatusCode)
	require.Equal(t, "rate_limited", out["error"].(map[string]any)["code"])
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	// Another tenant is not affected; and a duplicate of an admitted request
	// is still answered while the tenant is rate limited, a new one is not.
	resp, first := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_b", `{"input":"k"}`, "Idempotency-Key", "dup-1")
	require.Equal(t, 201, resp.StatusCode, first)
	resp, again := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_b", `{"input":"k"}`, "Idempotency-Key", "dup-1")
	require.Equal(t, 200, resp.StatusCode, again)
	require.Equal(t, first["run"].(map[string]any)["run_id"], again["run"].(map[string]any)["run_id"])
	resp, out = b.do("POST", "/v1/agents/agt_echo/runs", "tnt_b", `{"input":"other"}`, "Idempotency-Key", "dup-1")
	require.Equal(t, 409, resp.StatusCode, out)
	resp, _ = b.do("POST", "/v1/agents/agt_echo/runs", "tnt_b", `{"input":"k"}`, "Idempotency-Key", "dup-2")
	require.Equal(t, 429, resp.StatusCode)
}

func TestBodyLimitAndHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	big := `{"input":"` + strings.Repeat("a", 1<<20) + `"}`
	resp, out := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", big, "X-Correlation-Id", "corr_test_1",
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	require.Equal(t, 413, resp.StatusCode)
	require.Equal(t, "invalid_request", out["error"].(map[string]any)["code"])
	require.Equal(t, "corr_test_1", out["correlation_id"])
	require.Equal(t, "corr_test_1", resp.Header.Get("X-Correlation-Id"))
	require.NotEmpty(t, resp.Header.Get("X-Request-Id"))
	require.True(t, strings.HasPrefix(resp.Header.Get("traceparent"), "00-0af7651916cd43dd8448eb211c80319c-"))
}

func TestCancelStopsHangingModelCall(t *testing.T) {
	t.Parallel()
	m := &scriptedModel{}
	m.blockFrom.Store(1) // every model call hangs until its context ends
	b := setup(t, bundleOpts{model: m})
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "hang"})
	require.Eventually(t, func() bool { return m.calls.Load() >= 1 }, 10*time.Second, 5*time.Millisecond)
	resp, out := b.do("POST", "/v1/runs/"+runID+":cancel", "tnt_a", nil)
	require.Equal(t, 200, resp.StatusCode, out)
	evs := b.streamEvents("tnt_a", runID)
	requireGapless(t, evs, 1)
	require.Equal(t, store.EventRunCanceled, evs[len(evs)-1].Type)
	// The executor lets go of the run (its model call returned on cancel)
	// and no event follows the cancel.
	require.Eventually(t, func() bool {
		b.srv.mu.Lock()
		defer b.srv.mu.Unlock()
		return len(b.srv.running) == 0
	}, 5*time.Second, 5*time.Millisecond)
	after, err := b.db.ListEvents(t.Context(), store.ListEventsParams{TenantID: "tnt_a", RunID: runID})
	require.NoError(t, err)
	require.Len(t, after, len(evs))
}
