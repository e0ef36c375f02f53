package agentorchestrator

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/bus/nats/natstest"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
)

// Two replicas on one PostgreSQL store and one NATS server, every poll an
// hour long: a run executed by replica 1 stops in requires_action; the
// decision made through replica 2 (API only) queues it again and wakes
// replica 1 over the bus, which carries on; replica 2 streams it all.
func TestApprovalAcrossReplicas(t *testing.T) {
	pgURL := pgtest.URL(t)
	nats := natstest.Start(t, natstest.Options{})
	r1 := newReplica(t, "replica-1", pgURL, nats.URL(), true)
	r2 := newReplica(t, "replica-2", pgURL, nats.URL(), false)
	seedReplicas(t, r1.db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := r1.db.GetAgent(ctx, "tnt_a", "agt_echo")
	require.NoError(t, err)
	a.RequireApproval = []string{"tool.echo"}
	require.NoError(t, r1.db.PutAgent(ctx, a))

	b2 := r2.bundle(t)
	runID := b2.createRun("tnt_a", "agt_echo", map[string]any{"input": "cross replica"})
	resp := r2.openStream(ctx, t, runID)
	require.Eventually(t, func() bool {
		run, err := r2.db.GetRun(ctx, "tnt_a", runID)
		require.NoError(t, err)
		return run.Status == store.RunRequiresAction
	}, 30*time.Second, 10*time.Millisecond)
	out, body := b2.do("POST", "/v1/runs/"+runID+":resume", "tnt_a", map[string]any{"decision": "approve"})
	require.Equal(t, http.StatusOK, out.StatusCode, body)
	evs := readStream(t, resp)
	requireOneTerminal(t, evs, store.EventRunCompleted)
	types := eventTypes(evs)
	require.Contains(t, types, store.EventRunRequiresAction)
	require.Contains(t, types, store.EventRunResumed)
	require.Contains(t, types, store.EventToolCallRequested)
}
