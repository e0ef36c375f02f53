package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

// BenchmarkListDueApprovals measures one tick of the orchestrator's expiry
// sweep (every replica, every second) when nothing is due, over 2,000
// pending and 2,000 decided approvals: the partial index on pending
// deadlines keeps it a lookup.
func BenchmarkListDueApprovals(b *testing.B) {
	db := MustOpen(b)
	ctx := context.Background()
	now := time.Now().UTC()
	for i := range 4000 {
		res, err := db.CreateRun(ctx, store.CreateRunParams{Run: benchRun(i), Priority: 1})
		require.NoError(b, err)
		a := store.Approval{ToolCallID: fmt.Sprintf("tcall_%d", i), StepID: "stp_1", ToolID: "tool.echo",
			Status: store.ApprovalPending, CreatedAt: now, Deadline: now.Add(time.Hour)}
		if i%2 == 1 {
			decided := now
			a.Status, a.DecidedBy, a.DecidedAt, a.Deadline = store.ApprovalApproved, "usr_x", &decided, now.Add(-time.Hour)
		}
		_, err = db.ApplyRunChange(ctx, store.RunChange{TenantID: res.Run.TenantID, RunID: res.Run.RunID,
			Run: &store.Run{Status: store.RunRequiresAction}, Approval: &a, Dequeue: true})
		require.NoError(b, err)
	}
	for b.Loop() {
		due, err := db.ListDueApprovals(ctx, now, 100)
		require.NoError(b, err)
		require.Empty(b, due)
	}
}
