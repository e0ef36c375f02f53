package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

// BenchmarkApplyRunChangeWebhookAll is BenchmarkApplyRunChange on a run
// whose webhook wants every event: each change also writes two outbox
// rows in its transaction (compare with BenchmarkApplyRunChange, where the
// outbox costs one lookup of the run's targets).
func BenchmarkApplyRunChangeWebhookAll(b *testing.B) {
	db := MustOpen(b)
	ctx := context.Background()
	res, err := db.CreateRun(ctx, store.CreateRunParams{Run: benchRun(0),
		Webhooks: []store.WebhookTarget{{URL: "https://hooks.example.com/x", Events: store.WebhookEventsAll}}})
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
