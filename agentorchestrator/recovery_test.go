package agentorchestrator

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/queue"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
)

// toolResults returns the payloads of a run's tool.call.completed events.
func toolResults(t *testing.T, evs []store.Event) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e.Type == store.EventToolCallCompleted {
			var p map[string]any
			require.NoError(t, json.Unmarshal(e.Payload, &p))
			out = append(out, p)
		}
	}
	return out
}

// crashMidTool starts a run whose tool is in flight, stops the executor
// (as a crash would, leaving the run running and leased), and resumes it
// in a second orchestrator on the same database.
func crashMidTool(t *testing.T, idempotent bool) (*testBundle, *blockingTool, string) {
	first := newBlockingTool("tool.test.block", idempotent)
	b1 := setup(t, bundleOpts{extra: []tools.Tool{first}, leaseTTL: 300 * time.Millisecond})
	runID := b1.createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "crash me"})
	<-first.started
	b1.close()
	run, err := b1.db.GetRun(t.Context(), "tnt_a", runID)
	require.NoError(t, err)
	require.Equal(t, store.RunRunning, run.Status, "a stopped executor leaves its run for another")

	second := newBlockingTool("tool.test.block", idempotent)
	close(second.release)
	b2 := setup(t, bundleOpts{dbPath: b1.dbPath, extra: []tools.Tool{second}, leaseTTL: 300 * time.Millisecond})
	b2.waitStatus("tnt_a", runID, store.RunCompleted)
	return b2, second, runID
}

func TestResumeDoesNotRerunNonIdempotentTool(t *testing.T) {
	t.Parallel()
	b2, second, runID := crashMidTool(t, false)
	require.Zero(t, second.calls.Load(), "a non-idempotent tool in flight at the crash must not run again")
	evs := b2.streamEvents("tnt_a", runID)
	requireGapless(t, evs, 1)
	res := toolResults(t, evs)
	require.Len(t, res, 1)
	require.Equal(t, "error", res[0]["status"])
	require.Equal(t, codeInterrupted, res[0]["error"].(map[string]any)["code"])
	require.Equal(t, store.EventRunCompleted, evs[len(evs)-1].Type)
}

func TestResumeRetriesIdempotentTool(t *testing.T) {
	t.Parallel()
	b2, second, runID := crashMidTool(t, true)
	require.EqualValues(t, 1, second.calls.Load())
	evs := b2.streamEvents("tnt_a", runID)
	requireGapless(t, evs, 1)
	res := toolResults(t, evs)
	require.Len(t, res, 1, "the retried call completes once; no duplicate events")
	require.Equal(t, "ok", res[0]["status"])
}

func TestResumeReusesCompletedToolResult(t *testing.T) {
	t.Parallel()
	counting := newBlockingTool("tool.test.count", false)
	close(counting.release)
	m1 := &scriptedModel{}
	m1.blockFrom.Store(2) // the second model call is in flight at the crash
	b1 := setup(t, bundleOpts{extra: []tools.Tool{counting}, model: m1, leaseTTL: 300 * time.Millisecond})
	runID := b1.createRun("tnt_a", "agt_tool.test.count", map[string]any{"input": "once"})
	require.Eventually(t, func() bool { return m1.calls.Load() >= 2 }, 10*time.Second, 5*time.Millisecond)
	b1.close()

	b2 := setup(t, bundleOpts{dbPath: b1.dbPath, extra: []tools.Tool{counting}, leaseTTL: 300 * time.Millisecond})
	run := b2.waitStatus("tnt_a", runID, store.RunCompleted)
	require.EqualValues(t, 1, counting.calls.Load(), "a tool call completed before the crash is not executed again")
	require.Equal(t, `Echo: {"text":"released"}`, run.Output.Text)
	evs := b2.streamEvents("tnt_a", runID)
	requireGapless(t, evs, 1)
	require.Len(t, toolResults(t, evs), 1)
}

func TestResumeAfterFailedModelStepFailsTheRun(t *testing.T) {
	t.Parallel()
	// The node before the crash: its executor leased the run, started it and
	// recorded a failed model step, then died before writing run.failed.
	b0 := setup(t, bundleOpts{noExec: true})
	ctx := t.Context()
	res, err := b0.db.CreateRun(ctx, store.CreateRunParams{Run: store.Run{TenantID: "tnt_a", AgentID: "agt_echo",
		PrincipalID: "usr_x", Input: store.RunInput{Type: "text", Text: "x"},
		RunOptions: store.RunOptions{MaxSteps: 4, TimeoutMs: 60000, Priority: "normal"}}, Priority: queue.PriorityNormal})
	require.NoError(t, err)
	runID := res.Run.RunID
	ls, err := b0.srv.cfg.Queue.Lease(ctx, queue.LeaseParams{Owner: "crashed", Max: 1, TTL: time.Millisecond})
	require.NoError(t, err)
	require.Len(t, ls, 1)
	now := time.Now()
	_, err = b0.db.ApplyRunChange(ctx, store.RunChange{TenantID: "tnt_a", RunID: runID,
		FromStatuses: []store.RunStatus{store.RunQueued},
		Run:          &store.Run{Status: store.RunRunning, StartedAt: &now, Attempt: ls[0].Attempt},
		Steps: []store.Step{{
			StepID: "stp_failed", Index: 0, Kind: store.StepModel, Name: "tier:fast", Status: store.StepFailed,
			Output:    json.RawMessage(`{"status":"error","error":{"code":"policy_blocked","message":"blocked by policy","retryable":false}}`),
			StartedAt: now}}})
	require.NoError(t, err)
	b0.close()

	// The restarted node leases the run again once the dead lease expires.
	b := setup(t, bundleOpts{dbPath: b0.dbPath})
	run := b.waitStatus("tnt_a", runID, store.RunFailed)
	require.Equal(t, "policy_blocked", run.Error.Code, "the recorded failure is not mistaken for a final answer")
	require.Zero(t, b.model.calls.Load(), "the failed model call is not made again")
}

// A run executing in one orchestrator is canceled through another sharing
// its store (replicas): the executor learns of it from the store and stops
// its in-flight tool call; the run has one terminal event, run.canceled.
func TestCancelThroughAnotherReplicaStopsTheExecutor(t *testing.T) {
	t.Parallel()
	tool := newBlockingTool("tool.test.block", false)
	b1 := setup(t, bundleOpts{extra: []tools.Tool{tool}})
	runID := b1.createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "cancel me elsewhere"})
	<-tool.started
	b2 := setup(t, bundleOpts{dbPath: b1.dbPath, noExec: true})
	resp, _ := b2.do("POST", "/v1/runs/"+runID+":cancel", "tnt_a", `{"reason":"from replica 2"}`)
	require.Equal(t, 200, resp.StatusCode)
	require.Eventually(t, func() bool { return tool.ctxErr.Load() != nil }, 10*time.Second, 20*time.Millisecond,
		"the in-flight tool call is canceled")
	evs := b1.streamEvents("tnt_a", runID)
	require.Equal(t, store.EventRunCanceled, evs[len(evs)-1].Type)
	for i, e := range evs {
		require.EqualValues(t, i+1, e.Sequence)
		if i < len(evs)-1 {
			require.False(t, store.IsTerminalEvent(e.Type), "one terminal event, last")
		}
	}
}
