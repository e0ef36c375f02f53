package node

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/bus/inproc"
	natsbus "github.com/nexixai/agentos/internal/bus/nats"
	"github.com/nexixai/agentos/internal/bus/nats/natstest"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// openBus follows AGENTOS_BUS_URL: empty gives the in-process bus (with
// the store as its history, so resumed streams work) and the default
// store poll; a NATS URL gives JetStream and the longer poll; a NATS
// server that does not answer is an error naming the setting.
func TestOpenBus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "agentos.db"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	cfg, err := config.Load(func(string) (string, bool) { return "", false }, filepath.Join(t.TempDir(), "none.env"))
	require.NoError(t, err)

	b, poll, err := openBus(ctx, cfg, db)
	require.NoError(t, err)
	require.IsType(t, &inproc.Bus{}, b)
	require.Zero(t, poll, "the orchestrator's default poll")
	sub, err := b.Subscribe(ctx, bus.SubscribeParams{TenantID: "tnt_a", RunID: "run_1", Resume: true})
	require.NoError(t, err, "the in-process bus resumes from the store")
	sub.Close()
	require.NoError(t, b.Close())

	nats := natstest.Start(t, natstest.Options{})
	cfg.BusURL, cfg.BusReplicas = nats.URL(), 1
	b, poll, err = openBus(ctx, cfg, db)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.IsType(t, &natsbus.Bus{}, b)
	require.Equal(t, natsStorePoll, poll)
	sub, err = b.Subscribe(ctx, bus.SubscribeParams{TenantID: "tnt_a", RunID: "run_1"})
	require.NoError(t, err)
	defer sub.Close()
	ev := store.Event{EventID: "evt_1", TenantID: "tnt_a", RunID: "run_1", Sequence: 1, Type: store.EventRunCreated, Time: time.Now()}
	require.NoError(t, b.Publish(ctx, ev))
	select {
	case got := <-sub.C():
		require.Equal(t, "evt_1", got.EventID)
	case <-time.After(30 * time.Second):
		t.Fatal("the published event did not arrive")
	}

	// Nothing listens there (this test's port range): refused at once.
	cfg.BusURL = "nats://127.0.0.1:53199"
	_, _, err = openBus(ctx, cfg, db)
	require.ErrorContains(t, err, "AGENTOS_BUS_URL")
}
