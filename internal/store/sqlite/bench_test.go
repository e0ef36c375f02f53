package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

func benchRun(i int) store.Run {
	return store.Run{TenantID: "ten_bench", AgentID: "agt_1", PrincipalID: "prn_1",
		Input: store.RunInput{Type: "text", Text: fmt.Sprintf("request %d", i)}}
}

// BenchmarkCreateRun measures admission: idempotency key, run, first event,
// queue entry and audit record in one transaction.
func BenchmarkCreateRun(b *testing.B) {
	db := MustOpen(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		_, err := db.CreateRun(ctx, store.CreateRunParams{
			Run:            benchRun(i),
			FirstEvent:     store.Event{Payload: json.RawMessage(`{"status":"queued"}`)},
			Audit:          &store.AuditRecord{TenantID: "ten_bench", Action: "run.create", Outcome: "allowed"},
			IdempotencyKey: fmt.Sprintf("key-%d", i),
			Fingerprint:    "fp",
			Priority:       1,
		})
		require.NoError(b, err)
	}
}

// BenchmarkCreateRunParallel is CreateRun from 50 goroutines per core (the
// issue's 50 concurrent clients): the writer groups them into shared commits.
func BenchmarkCreateRunParallel(b *testing.B) {
	db := MustOpen(b)
	ctx := context.Background()
	b.SetParallelism(25)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, err := db.CreateRun(ctx, store.CreateRunParams{Run: benchRun(0), Priority: 1})
			require.NoError(b, err)
		}
	})
}

// BenchmarkApplyRunChange measures one executor step: a step upsert and two
// events appended to a run.
func BenchmarkApplyRunChange(b *testing.B) {
	db := MustOpen(b)
	ctx := context.Background()
	res, err := db.CreateRun(ctx, store.CreateRunParams{Run: benchRun(0)})
	require.NoError(b, err)
	run := res.Run
	i := 0
	for b.Loop() {
		i++
		_, err := db.ApplyRunChange(ctx, store.RunChange{
			TenantID: run.TenantID,
			RunID:    run.RunID,
			Steps: []store.Step{{StepID: fmt.Sprintf("stp_%d", i), Index: i, Kind: store.StepModel,
				Status: store.StepCompleted, Output: json.RawMessage(`{"text":"ok"}`)}},
			Events: []store.Event{
				{Type: store.EventModelRequested, Payload: json.RawMessage(`{}`)},
				{Type: store.EventModelCompleted, Payload: json.RawMessage(`{"tokens":12}`)},
			},
		})
		require.NoError(b, err)
	}
}
