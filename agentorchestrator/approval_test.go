package agentorchestrator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
)

// requireApproval makes agt_echo's tool.echo calls wait for approval.
func requireApproval(t *testing.T, b *testBundle, tenant string, set func(*store.Agent)) {
	t.Helper()
	ctx := context.Background()
	a, err := b.db.GetAgent(ctx, tenant, "agt_echo")
	require.NoError(t, err)
	a.RequireApproval = []string{"tool.echo"}
	if set != nil {
		set(&a)
	}
	require.NoError(t, b.db.PutAgent(ctx, a))
}

// eventsOf reads a run's stored events (the run need not have ended).
func eventsOf(t *testing.T, b *testBundle, tenant, runID string) []store.Event {
	t.Helper()
	evs, err := b.db.ListEvents(context.Background(), store.ListEventsParams{TenantID: tenant, RunID: runID})
	require.NoError(t, err)
	return evs
}

func eventOf(evs []store.Event, typ string) (map[string]any, bool) {
	for _, e := range evs {
		if e.Type == typ {
			var p map[string]any
			_ = json.Unmarshal(e.Payload, &p)
			return p, true
		}
	}
	return nil, false
}

func (b *testBundle) resume(tenant, runID string, body any) (*http.Response, map[string]any) {
	b.t.Helper()
	return b.do("POST", "/v1/runs/"+runID+":resume", tenant, body)
}

func TestApprovalDecisions(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	requireApproval(t, b, "tnt_a", nil)

	waiting := func(input string) (string, map[string]any) {
		runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": input})
		b.waitStatus("tnt_a", runID, store.RunRequiresAction)
		evs := eventsOf(t, b, "tnt_a", runID)
		p, ok := eventOf(evs, store.EventRunRequiresAction)
		require.True(t, ok, eventTypes(evs))
		_, requested := eventOf(evs, store.EventToolCallRequested)
		require.False(t, requested, "the tool is not called before a decision")
		ra := p["required_action"].(map[string]any)
		require.Equal(t, "tool.echo", ra["tool_id"])
		require.Equal(t, map[string]any{"text": input}, ra["arguments"])
		require.NotEmpty(t, ra["tool_call_id"])
		require.NotEmpty(t, ra["deadline"])
		return runID, ra
	}

	t.Run("approve", func(t *testing.T) {
		runID, ra := waiting("approve me")
		resp, out := b.resume("tnt_a", runID, map[string]any{"decision": "approve"})
		require.Equal(t, http.StatusOK, resp.StatusCode, out)
		require.Equal(t, "queued", out["run"].(map[string]any)["status"])
		evs := b.streamEvents("tnt_a", runID)
		requireGapless(t, evs, 1)
		run, err := b.db.GetRun(context.Background(), "tnt_a", runID)
		require.NoError(t, err)
		require.Equal(t, store.RunCompleted, run.Status)
		resumed, ok := eventOf(evs, store.EventRunResumed)
		require.True(t, ok)
		require.Equal(t, "approved", resumed["decision"])
		require.Equal(t, "usr_anonymous", resumed["decided_by"])
		req, _ := eventOf(evs, store.EventToolCallRequested)
		require.Equal(t, ra["tool_call_id"], req["tool_call_id"], "the approved call keeps its id")
		done, _ := eventOf(evs, store.EventToolCallCompleted)
		require.Equal(t, "ok", done["status"])
		require.Contains(t, run.Output.Text, "approve me")
		// Second decision: not awaiting action any more.
		resp, out = b.resume("tnt_a", runID, map[string]any{"decision": "approve"})
		require.Equal(t, http.StatusConflict, resp.StatusCode, out)
		require.Equal(t, "conflict", out["error"].(map[string]any)["code"])
	})

	t.Run("reject", func(t *testing.T) {
		runID, _ := waiting("reject me")
		resp, out := b.resume("tnt_a", runID, map[string]any{"decision": "reject", "comment": "not today"})
		require.Equal(t, http.StatusOK, resp.StatusCode, out)
		evs := b.streamEvents("tnt_a", runID)
		run := b.waitStatus("tnt_a", runID, store.RunCompleted)
		_, requested := eventOf(evs, store.EventToolCallRequested)
		require.False(t, requested, "a rejected call is never executed")
		done, ok := eventOf(evs, store.EventToolCallCompleted)
		require.True(t, ok)
		require.Equal(t, "error", done["status"])
		require.Equal(t, codeApprovalRejected, done["error"].(map[string]any)["code"])
		// The scripted model echoes the last message: the tool result it was given.
		require.Contains(t, run.Output.Text, codeApprovalRejected)
		require.Contains(t, run.Output.Text, "not today")
	})

	t.Run("edit", func(t *testing.T) {
		runID, _ := waiting("edit me")
		resp, out := b.resume("tnt_a", runID, map[string]any{"decision": "edit", "arguments": map[string]any{"text": "edited text"}})
		require.Equal(t, http.StatusOK, resp.StatusCode, out)
		evs := b.streamEvents("tnt_a", runID)
		run := b.waitStatus("tnt_a", runID, store.RunCompleted)
		req, ok := eventOf(evs, store.EventToolCallRequested)
		require.True(t, ok)
		require.Equal(t, map[string]any{"text": "edited text"}, req["input"])
		require.Contains(t, run.Output.Text, "edited text")
		require.NotContains(t, run.Output.Text, "edit me")
		ap, err := b.db.GetApproval(context.Background(), "tnt_a", runID, req["tool_call_id"].(string))
		require.NoError(t, err)
		require.Equal(t, store.ApprovalEdited, ap.Status)
		require.JSONEq(t, `{"text":"edit me"}`, string(ap.Arguments))
		require.JSONEq(t, `{"text":"edited text"}`, string(ap.DecidedArguments))
	})

	t.Run("bad requests change nothing", func(t *testing.T) {
		runID, _ := waiting("bad requests")
		for _, c := range []struct {
			body  any
			field string
		}{
			{map[string]any{}, "decision"},
			{map[string]any{"decision": "maybe"}, "decision"},
			{map[string]any{"decision": "edit"}, "arguments"},
			{map[string]any{"decision": "edit", "arguments": []int{1}}, "arguments"},
			{map[string]any{"decision": "edit", "arguments": map[string]any{"text": 5}}, "arguments.text"},
			{map[string]any{"decision": "approve", "arguments": map[string]any{"text": "x"}}, "arguments"},
		} {
			resp, out := b.resume("tnt_a", runID, c.body)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, out)
			e := out["error"].(map[string]any)
			require.Equal(t, "invalid_request", e["code"])
			require.Equal(t, c.field, e["details"].(map[string]any)["field"], e["message"])
		}
		run, err := b.db.GetRun(context.Background(), "tnt_a", runID)
		require.NoError(t, err)
		require.Equal(t, store.RunRequiresAction, run.Status)
		// Another tenant does not see the run.
		resp, out := b.resume("tnt_b", runID, map[string]any{"decision": "approve"})
		require.Equal(t, http.StatusNotFound, resp.StatusCode, out)
		// Cancel works on a waiting run; the approval then closes.
		resp, out = b.do("POST", "/v1/runs/"+runID+":cancel", "tnt_a", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, out)
		resp, out = b.resume("tnt_a", runID, map[string]any{"decision": "approve"})
		require.Equal(t, http.StatusConflict, resp.StatusCode, out)
	})

	// Decisions are audited with the deciding principal.
	recs, err := b.db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a", Limit: 1000})
	require.NoError(t, err)
	n := 0
	for _, r := range recs {
		if r.Action == "run.resume" {
			n++
			require.Equal(t, "usr_anonymous", r.PrincipalID)
		}
	}
	require.Equal(t, 3, n)
}

func TestApprovalExpires(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	requireApproval(t, b, "tnt_a", func(a *store.Agent) { a.ApprovalTimeoutMs = 1 })
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "too late"})
	// The server's own sweep (every second) expires it: the run's
	// requires_action may be too short-lived to observe, so the test reads
	// the whole stream instead.
	evs := b.streamEvents("tnt_a", runID)
	run := b.waitStatus("tnt_a", runID, store.RunCompleted)
	_, waited := eventOf(evs, store.EventRunRequiresAction)
	require.True(t, waited, eventTypes(evs))
	resumed, ok := eventOf(evs, store.EventRunResumed)
	require.True(t, ok)
	require.Equal(t, store.ApprovalExpired, resumed["decision"])
	require.Equal(t, systemPrincipal, resumed["decided_by"])
	_, requested := eventOf(evs, store.EventToolCallRequested)
	require.False(t, requested)
	require.Contains(t, run.Output.Text, "deadline")
	due, err := b.db.ListDueApprovals(context.Background(), b.srv.cfg.Now(), 0)
	require.NoError(t, err)
	require.Empty(t, due)
}

func TestApprovalRuleAndWaitingHoldsNoSlot(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{tenantFn: func(tn *store.Tenant) { tn.Quotas.Runs.MaxConcurrentRuns = 1 }})
	ctx := context.Background()
	a, err := b.db.GetAgent(ctx, "tnt_a", "agt_echo")
	require.NoError(t, err)
	a.ApprovalRule = `tool == "tool.echo" && args.text.startsWith("secret")`
	require.NoError(t, b.db.PutAgent(ctx, a))

	held := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "secret plans"})
	b.waitStatus("tnt_a", held, store.RunRequiresAction)
	// max_concurrent_runs=1 and a run waits for approval: it holds no slot.
	free := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "public"})
	b.waitStatus("tnt_a", free, store.RunCompleted)
	// The waiting run has no queue entry at all (removed with the commit
	// that stopped it), so nothing can lease, ack or renew it.
	require.Eventually(t, func() bool {
		d, err := b.srv.cfg.Queue.Depth(ctx)
		require.NoError(t, err)
		return d.Queued["tnt_a"] == 0 && d.Leased["tnt_a"] == 0
	}, 20*time.Second, 10*time.Millisecond)
	resp, out := b.do("GET", "/v1/runs?status=requires_action", "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	runs := out["runs"].([]any)
	require.Len(t, runs, 1)
	require.Equal(t, held, runs[0].(map[string]any)["run_id"])
	resp, out = b.resume("tnt_a", held, map[string]any{"decision": "approve"})
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	b.waitStatus("tnt_a", held, store.RunCompleted)
}

func TestAgentApprovalSettingsValidated(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	admin := adminToken(t, b, "tnt_a", auth.RoleTenantAdmin)
	put := func(extra map[string]any) (*http.Response, map[string]any) {
		body := map[string]any{"name": "x", "model_ref": "tier:fast", "tools": []string{"tool.echo"}}
		for k, v := range extra {
			body[k] = v
		}
		return b.do("PUT", "/v1/admin/agents/agt_approved", "", map[string]any{"agent": body}, "Authorization", admin)
	}
	for _, c := range []struct {
		extra map[string]any
		field string
	}{
		{map[string]any{"require_approval": []string{"tool.kv.get"}}, "agent.require_approval[0]"},
		{map[string]any{"approval_rule": "tool =="}, "agent.approval_rule"},
		{map[string]any{"approval_rule": `"a string"`}, "agent.approval_rule"},
		{map[string]any{"approval_timeout_ms": -1}, "agent.approval_timeout_ms"},
	} {
		resp, out := put(c.extra)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, out)
		e := out["error"].(map[string]any)
		require.Equal(t, c.field, e["details"].(map[string]any)["field"], e["message"])
	}
	resp, out := put(map[string]any{"require_approval": []string{"tool.echo"}, "approval_rule": `args.text == "x"`, "approval_timeout_ms": 5000})
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	ag := out["agent"].(map[string]any)
	require.Equal(t, []any{"tool.echo"}, ag["require_approval"])
	require.True(t, strings.Contains(ag["approval_rule"].(string), "args.text"))
	require.EqualValues(t, 5000, ag["approval_timeout_ms"])
}

// A tenant tool registered with requires_approval waits for a person on
// every call, whatever the agent says.
func TestToolDefRequiresApproval(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{fetchAllow: "127.0.0.1"})
	hook := newHookServer(t)
	admin := []string{"Authorization", adminToken(t, b, "tnt_a", auth.RoleTenantAdmin)}
	body := toolBody(hook.URL)
	body["tool"].(map[string]any)["requires_approval"] = true
	resp, out := b.do("PUT", "/v1/admin/tools/tool.shout", "", body, admin...)
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	require.Equal(t, true, out["tool"].(map[string]any)["requires_approval"])
	resp, out = b.do("PUT", "/v1/admin/agents/agt_shout", "", map[string]any{"name": "shout", "model_ref": "tier:fast",
		"tools": []string{"tool.shout"}}, admin...)
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	runID := b.createRun("tnt_a", "agt_shout", map[string]any{"input": "hello hook"})
	b.waitStatus("tnt_a", runID, store.RunRequiresAction)
	p, ok := eventOf(eventsOf(t, b, "tnt_a", runID), store.EventRunRequiresAction)
	require.True(t, ok)
	require.Equal(t, "tool requires_approval", p["required_action"].(map[string]any)["reason"])
	hook.mu.Lock()
	require.Empty(t, hook.bodies, "the webhook is not called before a decision")
	hook.mu.Unlock()
	resp, out = b.resume("tnt_a", runID, map[string]any{"decision": "approve"})
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	run := b.waitStatus("tnt_a", runID, store.RunCompleted)
	require.Contains(t, run.Output.Text, "HELLO HOOK")
	hook.mu.Lock()
	require.Len(t, hook.bodies, 1)
	hook.mu.Unlock()
}

// decideOnPark decides a run's approval the moment the commit that parks
// it returns, before its executor acks the queue entry: the window in
// which a decision's re-enqueue could be lost to that ack.
type decideOnPark struct {
	store.Store
	srv  func() *Server
	done atomic.Bool
}

func (d *decideOnPark) ApplyRunChange(ctx context.Context, c store.RunChange) ([]store.Event, error) {
	evs, err := d.Store.ApplyRunChange(ctx, c)
	if err == nil && c.Run != nil && c.Run.Status == store.RunRequiresAction && d.done.CompareAndSwap(false, true) {
		// The commit's own context may end as soon as it returns (a step's
		// deadline, a loaded machine); the decision is a separate request.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, derr := d.srv().decide(dctx, c.TenantID, c.RunID, decision{status: store.ApprovalApproved, by: "usr_fast"}); derr != nil {
			panic(derr)
		}
	}
	return evs, err
}

func TestDecisionBeforeAckIsNotLost(t *testing.T) {
	t.Parallel()
	var b *testBundle
	// The decision wakes this process's scheduler while the parking
	// executor is still registered: the new lease is then left to expire
	// (runLease's duplicate case), so the run goes on after one lease TTL.
	b = setup(t, bundleOpts{leaseTTL: time.Second, wrapStore: func(st store.Store) store.Store {
		return &decideOnPark{Store: st, srv: func() *Server { return b.srv }}
	}})
	requireApproval(t, b, "tnt_a", nil)
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "quick yes"})
	run := b.waitStatus("tnt_a", runID, store.RunCompleted)
	require.Contains(t, run.Output.Text, "quick yes")
}

// A run can stop for approval more than once: each call waits on its own,
// and a stale decision (read before the run went on) cannot touch the
// later one.
func TestApprovalTwiceInOneRun(t *testing.T) {
	t.Parallel()
	model := &scriptedModel{}
	model.alwaysTool.Store(true)
	b := setup(t, bundleOpts{model: model})
	requireApproval(t, b, "tnt_a", func(a *store.Agent) { a.Defaults.MaxSteps = 2 })
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "again"})
	b.waitStatus("tnt_a", runID, store.RunRequiresAction)
	stale, err := b.db.GetRun(context.Background(), "tnt_a", runID)
	require.NoError(t, err)
	resp, out := b.resume("tnt_a", runID, map[string]any{"decision": "approve"})
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.Eventually(t, func() bool {
		n := 0
		for _, e := range eventsOf(t, b, "tnt_a", runID) {
			if e.Type == store.EventRunRequiresAction {
				n++
			}
		}
		return n == 2
	}, 20*time.Second, 10*time.Millisecond, "the second call waits too")
	b.waitStatus("tnt_a", runID, store.RunRequiresAction)
	// A decision made from the first wait's state conflicts (attempt fence).
	_, err = b.db.ApplyRunChange(context.Background(), store.RunChange{TenantID: "tnt_a", RunID: runID,
		FromStatuses: []store.RunStatus{store.RunRequiresAction}, ExpectAttempt: stale.Attempt, StatusOnly: true,
		Run: &store.Run{Status: store.RunQueued}})
	require.Error(t, err)
	resp, out = b.resume("tnt_a", runID, map[string]any{"decision": "reject"})
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	run := b.waitStatus("tnt_a", runID, store.RunFailed)
	require.Equal(t, codeMaxSteps, run.Error.Code)
	var callIDs, decisions []string
	for _, e := range eventsOf(t, b, "tnt_a", runID) {
		if e.Type == store.EventRunResumed {
			var p map[string]any
			require.NoError(t, json.Unmarshal(e.Payload, &p))
			callIDs = append(callIDs, p["tool_call_id"].(string))
			decisions = append(decisions, p["decision"].(string))
		}
	}
	require.Equal(t, []string{store.ApprovalApproved, store.ApprovalRejected}, decisions)
	require.NotEqual(t, callIDs[0], callIDs[1], "each call has its own approval")
}

// recordingTool is an idempotent tool that records its inputs and blocks
// until released.
type recordingTool struct {
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	inputs  []string
}

func newRecordingTool() *recordingTool {
	return &recordingTool{started: make(chan struct{}, 4), release: make(chan struct{})}
}

func (r *recordingTool) Spec() tools.Spec {
	return tools.Spec{ToolID: "tool.test.rec", Name: "rec", Description: "records its input",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`), Idempotent: true,
		DefaultTimeout: time.Minute}
}

func (r *recordingTool) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	r.mu.Lock()
	r.inputs = append(r.inputs, string(c.Input))
	r.mu.Unlock()
	r.started <- struct{}{}
	select {
	case <-r.release:
		return c.Input, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// An edited call in flight when its executor stops is made again (the tool
// is idempotent) with the edited arguments, not the model's.
func TestEditedCallResumedWithEditedArguments(t *testing.T) {
	t.Parallel()
	first := newRecordingTool()
	b1 := setup(t, bundleOpts{extra: []tools.Tool{first}, leaseTTL: 300 * time.Millisecond})
	ctx := context.Background()
	a, err := b1.db.GetAgent(ctx, "tnt_a", "agt_tool.test.rec")
	require.NoError(t, err)
	a.RequireApproval = []string{"tool.test.rec"}
	require.NoError(t, b1.db.PutAgent(ctx, a))
	runID := b1.createRun("tnt_a", "agt_tool.test.rec", map[string]any{"input": "model's text"})
	b1.waitStatus("tnt_a", runID, store.RunRequiresAction)
	resp, out := b1.resume("tnt_a", runID, map[string]any{"decision": "edit", "arguments": map[string]any{"text": "person's text"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	<-first.started
	b1.close()

	second := newRecordingTool()
	close(second.release)
	b2 := setup(t, bundleOpts{dbPath: b1.dbPath, extra: []tools.Tool{second}, leaseTTL: 300 * time.Millisecond})
	run := b2.waitStatus("tnt_a", runID, store.RunCompleted)
	require.Equal(t, []string{`{"text":"person's text"}`}, first.inputs)
	require.Equal(t, []string{`{"text":"person's text"}`}, second.inputs)
	require.Contains(t, run.Output.Text, "person's text")
}
