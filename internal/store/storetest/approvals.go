package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// testApprovals covers store/approvals.go: approvals written with run
// changes, the due list across tenants, the agent and tool settings.
func testApprovals(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("ParkResumeAndDue", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		run := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		other := createRun(t, s, newRun("ten_b", "agt_1", at(0)))
		pending := store.Approval{ToolCallID: "tcall_1", StepID: "stp_1", ToolID: "tool.echo",
			Arguments: json.RawMessage(`{"text":"hi"}`), Status: store.ApprovalPending, CreatedAt: at(time.Second),
			Deadline: at(time.Hour)}
		park := func(r store.Run, a store.Approval) {
			_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: r.TenantID, RunID: r.RunID,
				FromStatuses: []store.RunStatus{store.RunQueued}, Run: &store.Run{Status: store.RunRequiresAction},
				Approval: &a, Dequeue: true, Events: []store.Event{event(store.EventRunRequiresAction, 1)}})
			require.NoError(t, err)
		}
		park(run, pending)
		later := pending
		later.ToolCallID, later.Deadline = "tcall_2", at(2*time.Hour)
		park(other, later)

		got, err := s.GetApproval(ctx, "ten_a", run.RunID, "tcall_1")
		require.NoError(t, err)
		want := pending
		want.TenantID, want.RunID = "ten_a", run.RunID
		require.Equal(t, want, got)
		_, err = s.GetApproval(ctx, "ten_b", run.RunID, "tcall_1")
		requireCode(t, err, errs.ErrNotFound)
		r, err := s.GetRun(ctx, "ten_a", run.RunID)
		require.NoError(t, err)
		require.Equal(t, store.RunRequiresAction, r.Status)

		due, err := s.ListDueApprovals(ctx, at(time.Hour-time.Microsecond), 0)
		require.NoError(t, err)
		require.Empty(t, due)
		due, err = s.ListDueApprovals(ctx, at(3*time.Hour), 0)
		require.NoError(t, err)
		require.Len(t, due, 2)
		require.Equal(t, []string{"tcall_1", "tcall_2"}, []string{due[0].ToolCallID, due[1].ToolCallID}, "earliest deadline first, every tenant")
		due, err = s.ListDueApprovals(ctx, at(3*time.Hour), 1)
		require.NoError(t, err)
		require.Len(t, due, 1)

		// Resume: the decision replaces the approval, the run is queued again.
		decided := want
		decidedAt := at(2 * time.Minute)
		decided.Status, decided.DecidedBy, decided.DecidedAt = store.ApprovalEdited, "usr_bob", &decidedAt
		decided.DecidedArguments = json.RawMessage(`{"text":"edited"}`)
		resume := store.RunChange{TenantID: "ten_a", RunID: run.RunID, FromStatuses: []store.RunStatus{store.RunRequiresAction},
			StatusOnly: true, Run: &store.Run{Status: store.RunQueued}, Approval: &decided, Enqueue: true, EnqueuePriority: 1,
			Events: []store.Event{event(store.EventRunResumed, 2)}}
		evs, err := s.ApplyRunChange(ctx, resume)
		require.NoError(t, err)
		require.EqualValues(t, 3, evs[0].Sequence)
		got, err = s.GetApproval(ctx, "ten_a", run.RunID, "tcall_1")
		require.NoError(t, err)
		require.Equal(t, decided, got)
		due, err = s.ListDueApprovals(ctx, at(3*time.Hour), 0)
		require.NoError(t, err)
		require.Len(t, due, 1, "a decided approval is no longer due")
		require.Equal(t, "ten_b", due[0].TenantID)

		// A second decision finds the run no longer waiting.
		_, err = s.ApplyRunChange(ctx, resume)
		requireCode(t, err, errs.ErrConflict)
	})

	t.Run("ApprovalNeedsDeadline", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		run := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: run.RunID,
			Approval: &store.Approval{ToolCallID: "tcall_1", Status: store.ApprovalPending}})
		requireCode(t, err, errs.ErrInvalid)
		_, err = s.GetApproval(ctx, "ten_a", run.RunID, "tcall_1")
		requireCode(t, err, errs.ErrNotFound)
	})

	t.Run("AgentAndToolSettings", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := newAgent("ten_a", "agt_1")
		a.AgentApproval = store.AgentApproval{RequireApproval: []string{"tool.echo"},
			ApprovalRule: `tool == "tool.kv.get" && args.key == "secret"`, ApprovalTimeoutMs: 60000}
		require.NoError(t, s.PutAgent(ctx, a))
		got, err := s.GetAgent(ctx, "ten_a", "agt_1")
		require.NoError(t, err)
		require.Equal(t, a, got)
		d := newToolDef("ten_a", "tool.guarded")
		d.RequiresApproval = true
		require.NoError(t, s.PutTool(ctx, d))
		gd, err := s.GetTool(ctx, "ten_a", "tool.guarded")
		require.NoError(t, err)
		require.True(t, gd.RequiresApproval)
		d.RequiresApproval = false
		require.NoError(t, s.PutTool(ctx, d))
		gd, err = s.GetTool(ctx, "ten_a", "tool.guarded")
		require.NoError(t, err)
		require.False(t, gd.RequiresApproval)
	})
}
