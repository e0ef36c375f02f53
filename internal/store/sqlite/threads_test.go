package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

// A thread whose active run ended without releasing it (written around
// ApplyRunChange, which every ending in this code base goes through) takes
// the next run anyway.
func TestThreadNotStuckBehindAnEndedRun(t *testing.T) {
	t.Parallel()
	db := MustOpen(t)
	ctx := context.Background()
	now := time.Now().UTC()
	require.NoError(t, db.CreateThread(ctx, store.Thread{TenantID: "ten_a", ThreadID: "thr_a", CreatedAt: now, UpdatedAt: now}))
	run := func() store.Run {
		r := benchRun(1)
		r.TenantID, r.ThreadID, r.MultitaskStrategy = "ten_a", "thr_a", store.MultitaskReject
		return r
	}
	first, err := db.CreateRun(ctx, store.CreateRunParams{Run: run()})
	require.NoError(t, err)
	_, err = db.SQL().ExecContext(ctx, `UPDATE runs SET status = 'completed' WHERE run_id = ?`, first.Run.RunID)
	require.NoError(t, err)
	second, err := db.CreateRun(ctx, store.CreateRunParams{Run: run()})
	require.NoError(t, err)
	th, err := db.GetThread(ctx, "ten_a", "thr_a")
	require.NoError(t, err)
	require.Equal(t, second.Run.RunID, th.ActiveRunID)
}
