package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

// BenchmarkRunLifecycle measures a run's three store transactions
// (admission, start, finish with one model step) without a thread and on
// one thread: the difference is the thread's lock, its active run and the
// turn appended when the run ends (two messages per run here).
func BenchmarkRunLifecycle(b *testing.B) {
	for _, onThread := range []bool{false, true} {
		name := "plain"
		if onThread {
			name = "thread"
		}
		b.Run(name, func(b *testing.B) {
			db := MustOpen(b)
			ctx := context.Background()
			now := time.Now().UTC()
			threadID := ""
			if onThread {
				threadID = "thr_bench"
				require.NoError(b, db.CreateThread(ctx, store.Thread{TenantID: "ten_bench", ThreadID: threadID, CreatedAt: now, UpdatedAt: now}))
			}
			out := json.RawMessage(`{"message":{"role":"assistant","content":"ok"}}`)
			i := 0
			for b.Loop() {
				i++
				r := benchRun(i)
				r.ThreadID, r.MultitaskStrategy = threadID, store.MultitaskReject
				if !onThread {
					r.MultitaskStrategy = ""
				}
				res, err := db.CreateRun(ctx, store.CreateRunParams{Run: r, Priority: 1})
				require.NoError(b, err)
				run := res.Run
				run.Status, run.StartedAt, run.Attempt = store.RunRunning, &now, 1
				_, err = db.ApplyRunChange(ctx, store.RunChange{TenantID: run.TenantID, RunID: run.RunID, Run: &run,
					FromStatuses: []store.RunStatus{store.RunQueued}})
				require.NoError(b, err)
				run.Status, run.CompletedAt = store.RunCompleted, &now
				_, err = db.ApplyRunChange(ctx, store.RunChange{TenantID: run.TenantID, RunID: run.RunID, Run: &run,
					FromStatuses: []store.RunStatus{store.RunRunning},
					Steps: []store.Step{{StepID: fmt.Sprintf("stp_%d", i), Kind: store.StepModel, Status: store.StepCompleted,
						Output: out, StartedAt: now, CompletedAt: &now}},
					Events: []store.Event{{Type: store.EventRunCompleted, Payload: json.RawMessage(`{}`)}}})
				require.NoError(b, err)
			}
		})
	}
}
