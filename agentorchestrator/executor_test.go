package agentorchestrator

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tenancy"
	"github.com/nexixai/agentos/internal/tools"
)

func TestToolRateLimitBecomesToolError(t *testing.T) {
	t.Parallel()
	looping := &scriptedModel{}
	looping.alwaysTool.Store(true)
	b := setup(t, bundleOpts{model: looping, tenantFn: func(tn *store.Tenant) { tn.Quotas.Tools.ToolCallsPerMinute = 1 }})
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "x", "run_options": map[string]any{"max_steps": 2}})
	b.waitStatus("tnt_a", runID, store.RunFailed)
	res := toolResults(t, b.streamEvents("tnt_a", runID))
	require.Len(t, res, 2)
	require.Equal(t, "ok", res[0]["status"])
	require.Equal(t, "error", res[1]["status"])
	require.Equal(t, "rate_limited", res[1]["error"].(map[string]any)["code"])
}

func TestDenymapAndDryRun(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	// Denied: the model is not offered the tool at all, so it answers directly.
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "x", "tooling": map[string]any{"tool_denymap": []string{"tool.echo"}}})
	run := b.waitStatus("tnt_a", runID, store.RunCompleted)
	require.Zero(t, run.Summary.ToolCallsTotal)

	runID = b.createRun("tnt_a", "agt_echo", map[string]any{"input": "x", "run_options": map[string]any{"dry_run": true}})
	b.waitStatus("tnt_a", runID, store.RunCompleted)
	res := toolResults(t, b.streamEvents("tnt_a", runID))
	require.Len(t, res, 1)
	require.Equal(t, map[string]any{"dry_run": true, "executed": false}, res[0]["output"])
}

func TestModelRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	m := &flakyModel{scriptedModel: &scriptedModel{}, failures: 2}
	b := setup(t, bundleOpts{port: m})
	ctx := context.Background()
	a, err := b.db.GetAgent(ctx, "tnt_a", "agt_echo")
	require.NoError(t, err)
	a.Defaults.ModelRetries = 3
	require.NoError(t, b.db.PutAgent(ctx, a))
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "x"})
	b.waitStatus("tnt_a", runID, store.RunCompleted)
	require.EqualValues(t, 2, m.failed.Load())
}

func TestModelRateLimitIsWaitedOut(t *testing.T) {
	t.Parallel()
	m := &flakyModel{scriptedModel: &scriptedModel{}, failures: 3,
		err: &errs.Error{Code: errs.RateLimited, Message: "invoke rate exceeded", RetryAfter: 10 * time.Millisecond}}
	b := setup(t, bundleOpts{port: m})
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "x"})
	b.waitStatus("tnt_a", runID, store.RunCompleted)
	require.EqualValues(t, 3, m.failed.Load(), "rate_limited is retried even with model_retries=0")
}

// flakyModel fails with dependency_unavailable a number of times first.
type flakyModel struct {
	*scriptedModel
	failures int64
	failed   atomic.Int64
	err      *errs.Error // default dependency_unavailable
}

func (f *flakyModel) Chat(ctx context.Context, ac auth.Context, req modelport.ChatRequest) (modelport.ChatResponse, error) {
	if f.failed.Load() < f.failures {
		f.failed.Add(1)
		if f.err != nil {
			return modelport.ChatResponse{}, f.err
		}
		return modelport.ChatResponse{}, errs.E(errs.DependencyUnavailable, "model-policy restarting")
	}
	return f.scriptedModel.Chat(ctx, ac, req)
}

// failingTool always fails with a dependency error.
type failingTool struct{}

func (failingTool) Spec() tools.Spec {
	return tools.Spec{ToolID: "tool.test.fail", Name: "fail", Description: "always fails", InputSchema: json.RawMessage(`{"type":"object"}`)}
}

func (failingTool) Invoke(context.Context, tools.Call) (json.RawMessage, error) {
	return nil, errs.E(errs.DependencyUnavailable, "backend down")
}

func TestOnToolErrorFail(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{extra: []tools.Tool{failingTool{}}})
	// Default policy: the model sees the tool error and the run goes on.
	runID := b.createRun("tnt_a", "agt_tool.test.fail", map[string]any{"input": "x"})
	b.waitStatus("tnt_a", runID, store.RunCompleted)
	ctx := context.Background()
	a, err := b.db.GetAgent(ctx, "tnt_a", "agt_tool.test.fail")
	require.NoError(t, err)
	a.Defaults.OnToolError = "fail"
	require.NoError(t, b.db.PutAgent(ctx, a))
	runID = b.createRun("tnt_a", "agt_tool.test.fail", map[string]any{"input": "x"})
	run := b.waitStatus("tnt_a", runID, store.RunFailed)
	require.Equal(t, "dependency_unavailable", run.Error.Code)
}

func TestMaxConcurrentRunsQueuesInsteadOfRefusing(t *testing.T) {
	t.Parallel()
	slow := newBlockingTool("tool.test.block", true)
	b := setup(t, bundleOpts{extra: []tools.Tool{slow}, tenantFn: func(tn *store.Tenant) { tn.Quotas.Runs.MaxConcurrentRuns = 1 }})
	first := b.createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "1"})
	second := b.createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "2"})
	<-slow.started
	b.waitStatus("tnt_a", first, store.RunRunning)
	// The second run waits queued while the first holds the tenant's only slot;
	// another tenant is not held back.
	other := b.createRun("tnt_b", "agt_echo", map[string]any{"input": "3"})
	b.waitStatus("tnt_b", other, store.RunCompleted)
	run, err := b.db.GetRun(context.Background(), "tnt_a", second)
	require.NoError(t, err)
	require.Equal(t, store.RunQueued, run.Status)
	close(slow.release)
	b.waitStatus("tnt_a", first, store.RunCompleted)
	b.waitStatus("tnt_a", second, store.RunCompleted)
}

func TestSSEHeartbeatAndInactiveAgent(t *testing.T) {
	t.Parallel()
	slow := newBlockingTool("tool.test.block", true)
	b := setup(t, bundleOpts{extra: []tools.Tool{slow}, heartbeat: 20 * time.Millisecond})
	runID := b.createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "1"})
	req, err := http.NewRequest("GET", b.http.URL+"/v1/runs/"+runID+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_a")
	resp, err := b.http.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	pinged := false
	for sc.Scan() {
		if sc.Text() == ": ping" {
			pinged = true
			close(slow.release)
			break
		}
	}
	require.True(t, pinged)
	b.waitStatus("tnt_a", runID, store.RunCompleted)

	ctx := context.Background()
	a, err := b.db.GetAgent(ctx, "tnt_a", "agt_echo")
	require.NoError(t, err)
	a.Status = store.AgentInactive
	require.NoError(t, b.db.PutAgent(ctx, a))
	r, out := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", `{"input":"x"}`)
	require.Equal(t, 409, r.StatusCode)
	require.True(t, strings.Contains(out["error"].(map[string]any)["message"].(string), "inactive"))
}

func TestEventsPayloadsCarryContractFields(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "fields"})
	evs := b.streamEvents("tnt_a", runID)
	want := map[string][]string{
		store.EventRunCreated:        {"status"},
		store.EventStepStarted:       {"step_kind", "name"},
		store.EventToolCallRequested: {"tool_call_id", "tool_id", "input", "timeout_ms"},
		store.EventToolCallCompleted: {"tool_call_id", "tool_id", "status", "output", "duration_ms", "error"},
		store.EventModelRequested:    {"model_ref", "operation", "requirements", "input_summary"},
		store.EventModelCompleted:    {"model_ref", "operation", "status", "usage", "latency_ms", "policy_outcome", "route"},
		store.EventRunCompleted:      {"status", "output"},
	}
	for _, e := range evs {
		var p map[string]any
		require.NoError(t, json.Unmarshal(e.Payload, &p))
		for _, k := range want[e.Type] {
			require.Contains(t, p, k, "%s payload lacks %s", e.Type, k)
		}
		if e.Type == store.EventToolCallRequested || e.Type == store.EventToolCallCompleted {
			require.True(t, strings.HasPrefix(p["tool_call_id"].(string), "tcall_"))
			require.NotNil(t, e.StepID)
		}
	}
}

func TestDisabledTenantRunsWaitQueued(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{noExec: true})
	ctx := context.Background()
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "later"})
	tn, err := b.db.GetTenant(ctx, "tnt_a")
	require.NoError(t, err)
	tn.Status = store.TenantDisabled
	require.NoError(t, b.db.UpdateTenant(ctx, tn, time.Time{}))
	require.NoError(t, b.srv.Start(ctx))
	other := b.createRun("tnt_b", "agt_echo", map[string]any{"input": "now"})
	b.waitStatus("tnt_b", other, store.RunCompleted)
	run, err := b.db.GetRun(ctx, "tnt_a", runID)
	require.NoError(t, err)
	require.Equal(t, store.RunQueued, run.Status, "a disabled tenant's runs are paused, not failed")

	tn.Status = store.TenantActive
	require.NoError(t, b.db.UpdateTenant(ctx, tn, time.Time{}))
	b.waitStatus("tnt_a", runID, store.RunCompleted)
}

// A tenant disabled while its run executes gets nothing more done: the
// run's next model call is refused and the run fails with forbidden.
func TestTenantDisabledMidRunStopsIt(t *testing.T) {
	t.Parallel()
	tool := newBlockingTool("tool.test.block", false)
	b := setup(t, bundleOpts{extra: []tools.Tool{tool}})
	ctx := context.Background()
	runID := b.createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "stop me"})
	<-tool.started
	tn, err := b.db.GetTenant(ctx, "tnt_a")
	require.NoError(t, err)
	tn.Status = store.TenantDisabled
	require.NoError(t, b.db.UpdateTenant(ctx, tn, time.Time{}))
	close(tool.release)
	run := b.waitStatus("tnt_a", runID, store.RunFailed)
	require.Equal(t, string(errs.Forbidden), run.Error.Code)
	evs, err := b.db.ListEvents(ctx, store.ListEventsParams{TenantID: "tnt_a", RunID: runID})
	require.NoError(t, err)
	models := 0
	for _, e := range evs {
		if e.Type == store.EventModelRequested {
			models++
		}
	}
	require.Equal(t, 1, models, "no model call after the disable")
}

// A tenant created after the scheduler read the tenants' limits gets its
// max_concurrent_runs from the first run on (not "unlimited" until the
// scheduler's next read).
func TestNewTenantLimitHoldsFromItsFirstRun(t *testing.T) {
	t.Parallel()
	tool := newBlockingTool("tool.test.block", false)
	leases := newLeaseLog()
	b := setup(t, bundleOpts{extra: []tools.Tool{tool}, leases: leases})
	ctx := context.Background()
	// Let the scheduler read the limits before the tenant exists.
	b.waitStatus("tnt_a", b.createRun("tnt_a", "agt_echo", map[string]any{"input": "warm up"}), store.RunCompleted)
	tn := tenancy.NewTenant("tnt_new", "new", b.srv.cfg.Node)
	tn.Quotas.Runs.MaxConcurrentRuns = 1
	tn.Quotas.Runs.RunCreateQPS, tn.Quotas.Runs.RunCreateBurst = 100, 100
	require.NoError(t, b.db.CreateTenant(ctx, tn))
	require.NoError(t, b.db.PutAgent(ctx, store.Agent{AgentID: "agt_block", TenantID: "tnt_new", Name: "x", Version: 1,
		Status: store.AgentActive, ModelRef: "tier:fast", Tools: []string{"tool.test.block"},
		Defaults: store.AgentDefaults{MaxSteps: 4, TimeoutMs: 60000}, CreatedAt: time.Now(), UpdatedAt: time.Now()}))
	var ids []string
	for range 3 {
		ids = append(ids, b.createRun("tnt_new", "agt_block", map[string]any{"input": "hold"}))
	}
	<-tool.started
	// The lease call that started the first run is on record (the hook
	// runs before the executor). Of the next two, the second began after
	// all three runs were queued: both must have leased nothing more (a
	// synchronisation point, not a sleep that hopes they ran).
	rounds, _ := leases.snapshot("tnt_new")
	leases.waitRounds(t, rounds+2)
	_, leased := leases.snapshot("tnt_new")
	require.Equal(t, 1, leased, "max_concurrent_runs=1 from the start")
	running := 0
	for _, id := range ids {
		r, err := b.db.GetRun(ctx, "tnt_new", id)
		require.NoError(t, err)
		if r.Status == store.RunRunning {
			running++
		}
	}
	require.Equal(t, 1, running, "max_concurrent_runs=1 from the start")
	require.EqualValues(t, 1, tool.calls.Load())
	close(tool.release)
	for _, id := range ids {
		b.waitStatus("tnt_new", id, store.RunCompleted)
	}
}

// misbehavingTool panics, ignores its deadline, or answers too much: what
// tools.InvokeTool guards every tool call against.
type misbehavingTool struct {
	id      string
	timeout time.Duration
	invoke  func(ctx context.Context) (json.RawMessage, error)
}

func (m misbehavingTool) Spec() tools.Spec {
	return tools.Spec{ToolID: m.id, Name: m.id, Description: "misbehaves", InputSchema: json.RawMessage(`{"type":"object"}`),
		DefaultTimeout: m.timeout}
}

func (m misbehavingTool) Invoke(ctx context.Context, _ tools.Call) (json.RawMessage, error) {
	return m.invoke(ctx)
}

// A tool that panics, hangs past its timeout (ignoring its context) or
// returns more than tools.MaxOutputBytes fails its call with the
// contract's error in a real run; the run goes on (on_tool_error
// continue) and the node keeps executing runs.
func TestMisbehavingToolsEndInTheirErrors(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	tl := []tools.Tool{
		misbehavingTool{id: "tool.test.panic", invoke: func(context.Context) (json.RawMessage, error) { panic("tool bug") }},
		misbehavingTool{id: "tool.test.hang", timeout: 20 * time.Millisecond, invoke: func(context.Context) (json.RawMessage, error) {
			<-hang
			return json.RawMessage(`{}`), nil
		}},
		misbehavingTool{id: "tool.test.huge", invoke: func(context.Context) (json.RawMessage, error) {
			return json.Marshal(strings.Repeat("x", tools.MaxOutputBytes))
		}},
	}
	b := setup(t, bundleOpts{extra: tl})
	cases := []struct {
		tool, status, code, message string
	}{
		{"tool.test.panic", "error", "internal_error", "tool tool.test.panic failed"},
		{"tool.test.hang", "timeout", "timeout", "tool tool.test.hang did not finish within 20ms"},
		{"tool.test.huge", "error", "internal_error", "more than the limit of 1048576"},
	}
	for _, c := range cases {
		runID := b.createRun("tnt_a", "agt_"+c.tool, map[string]any{"input": "misbehave"})
		b.waitStatus("tnt_a", runID, store.RunCompleted)
		res := toolResults(t, b.streamEvents("tnt_a", runID))
		require.Len(t, res, 1, c.tool)
		require.Equal(t, c.status, res[0]["status"], c.tool)
		require.Nil(t, res[0]["output"], c.tool)
		e := res[0]["error"].(map[string]any)
		require.Equal(t, c.code, e["code"], c.tool)
		require.Contains(t, e["message"], c.message, c.tool)
	}
	// The panic took nothing down: the node still executes runs.
	b.waitStatus("tnt_a", b.createRun("tnt_a", "agt_echo", map[string]any{"input": "still here"}), store.RunCompleted)
}
