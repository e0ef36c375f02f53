package nats_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/bus/bustest"
	natsbus "github.com/nexixai/agentos/internal/bus/nats"
	"github.com/nexixai/agentos/internal/bus/nats/natstest"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func dial(t testing.TB, cfg natsbus.Config) *natsbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := natsbus.Dial(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestConformance runs the suite on one server; each subtest has its own
// namespace (subjects and streams), as separate deployments would.
func TestConformance(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	var n atomic.Int64
	bustest.Run(t, func(t *testing.T) bustest.Harness {
		cfg := natsbus.Config{URL: srv.URL(), Namespace: fmt.Sprintf("t%d", n.Add(1))}
		return bustest.Harness{Bus: dial(t, cfg), Connect: func(t *testing.T) bus.Bus { return dial(t, cfg) }}
	})
}

// TestConformanceFanout runs the suite on the local fan-out (one
// consumer per Bus, resumes from a history), as the orchestrator uses it.
func TestConformanceFanout(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	var n atomic.Int64
	bustest.Run(t, func(t *testing.T) bustest.Harness {
		log := &bustest.Log{}
		cfg := natsbus.Config{URL: srv.URL(), Namespace: fmt.Sprintf("f%d", n.Add(1)), History: log}
		return bustest.Harness{Bus: bustest.Committing(dial(t, cfg), log),
			Connect: func(t *testing.T) bus.Bus { return bustest.Committing(dial(t, cfg), log) }}
	})
}

// TestFanoutIsOneConsumerPerBus: a thousand subscriptions on one Bus
// (runs and tenants) are one consumer on the server, and each gets its
// events; another Bus (replica) adds one more.
func TestFanoutIsOneConsumerPerBus(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	log := &bustest.Log{}
	cfg := natsbus.Config{URL: srv.URL(), Namespace: "fan", History: log}
	b := dial(t, cfg)
	const runs, perRun = 250, 4
	var subs []bus.Subscription[store.Event]
	for i := range runs {
		for range perRun {
			s, err := b.Subscribe(context.Background(), bus.SubscribeParams{TenantID: "ten_a", RunID: fmt.Sprintf("run_%d", i)})
			require.NoError(t, err)
			defer s.Close()
			subs = append(subs, s)
		}
	}
	tenantSub, err := b.Subscribe(context.Background(), bus.SubscribeParams{TenantID: "ten_a"})
	require.NoError(t, err)
	defer tenantSub.Close()
	consumers := func() int {
		nc, err := natsio.Connect(srv.URL())
		require.NoError(t, err)
		defer nc.Close()
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		st, err := js.Stream(context.Background(), "FAN_EVENTS")
		require.NoError(t, err)
		info, err := st.Info(context.Background())
		require.NoError(t, err)
		return info.State.Consumers
	}
	require.Equal(t, 1, consumers(), "%d subscriptions, one consumer", len(subs)+1)

	// Another replica publishes; every subscription gets its run's event.
	other := bustest.Committing(dial(t, cfg), log)
	require.Equal(t, 2, consumers(), "one consumer per Bus")
	for i := range runs {
		require.NoError(t, other.Publish(context.Background(), event(fmt.Sprintf("run_%d", i), 1)))
	}
	for i, s := range subs {
		select {
		case e, ok := <-s.C():
			require.True(t, ok, "subscription %d ended", i)
			require.Equal(t, fmt.Sprintf("run_%d", i/perRun), e.RunID)
		case <-time.After(20 * time.Second):
			t.Fatalf("subscription %d got no event", i)
		}
	}
	// (The tenant subscription, unread, may have been dropped as lagged:
	// that is the port's backpressure, tested by the suite.)
}

func TestDialValidates(t *testing.T) {
	ctx := context.Background()
	for field, cfg := range map[string]natsbus.Config{
		"url":       {},
		"namespace": {URL: "nats://127.0.0.1:1", Namespace: "a.b"},
		"replicas":  {URL: "nats://127.0.0.1:1", Replicas: 7},
	} {
		_, err := natsbus.Dial(ctx, cfg)
		var e *errs.Error
		require.Truef(t, errors.As(err, &e), "%s: %v", field, err)
		require.Equal(t, errs.InvalidRequest, e.Code)
		require.Equal(t, field, e.Details["field"])
	}
	_, err := natsbus.Dial(ctx, natsbus.Config{URL: "nats://127.0.0.1:1"})
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "no server there: %v", err)
}

func event(run string, seq int64) store.Event {
	return store.Event{EventID: fmt.Sprintf("evt_%s_%d", run, seq), Sequence: seq, Type: "step.completed",
		TenantID: "ten_a", AgentID: "agt_1", RunID: run, Payload: []byte(`{}`)}
}

// publishUntilAcked retries one event until the bus acknowledges it, as a
// replica would through a failover. It returns how many attempts failed.
func publishUntilAcked(t *testing.T, b bus.Bus, e store.Event) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for failed := 0; ; failed++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := b.Publish(ctx, e)
		cancel()
		if err == nil {
			return failed
		}
		if time.Now().After(deadline) {
			t.Fatalf("event %d never acknowledged: %v", e.Sequence, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readAll resumes a run from the start on a fresh connection and reads n
// events.
func readAll(t *testing.T, cfg natsbus.Config, run string, n int) []int64 {
	t.Helper()
	b := dial(t, cfg)
	s, err := b.Subscribe(context.Background(), bus.SubscribeParams{TenantID: "ten_a", RunID: run, Resume: true})
	require.NoError(t, err)
	defer s.Close()
	var got []int64
	for len(got) < n {
		select {
		case e, ok := <-s.C():
			require.True(t, ok, "subscription ended")
			got = append(got, e.Sequence)
		case <-time.After(30 * time.Second):
			t.Fatalf("got %d of %d events", len(got), n)
		}
	}
	return got
}

func seqs(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestClusterLosesOneServer: three servers, streams with three replicas,
// the events stream's leader stops mid-load. Publishing goes on (after a
// failover that retries absorb), no acknowledged event or task is lost,
// none is duplicated, and a live subscriber sees all of them.
func TestClusterLosesOneServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server cluster")
	}
	cl := natstest.Start(t, natstest.Options{Servers: 3})
	cfg := natsbus.Config{URL: cl.URL(), Replicas: 3, Name: "publisher"}
	pub := dial(t, cfg)
	ctx := context.Background()

	sub, err := dial(t, cfg).Subscribe(ctx, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1"})
	require.NoError(t, err)
	defer sub.Close()
	for i := range 20 {
		require.NoError(t, pub.Enqueue(ctx, bus.Task{Queue: "tools", ID: fmt.Sprintf("t%d", i), TenantID: "ten_a"}))
	}

	const n, killAt = 300, 100
	killed, failed := -1, 0
	for seq := int64(1); seq <= n; seq++ {
		if seq == killAt {
			leader := streamLeader(t, cfg)
			t.Logf("stopping %s, the events stream's leader", leader)
			killed = int(leader[1] - '1')
			cl.Kill(killed)
		}
		failed += publishUntilAcked(t, pub, event("run_1", seq))
	}
	t.Logf("%d publish attempts failed during the failover and were retried", failed)

	// Every acknowledged event is there once, in order.
	require.Equal(t, seqs(1, n), readAll(t, cfg, "run_1", n))
	// The live subscriber got them too (resuming if it lagged, as a reader must).
	var last int64
	for last < n {
		select {
		case e, ok := <-sub.C():
			if !ok {
				require.True(t, sub.Lagged())
				sub, err = dial(t, cfg).Subscribe(ctx, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1", Resume: true, After: last})
				require.NoError(t, err)
				continue
			}
			require.Equal(t, last+1, e.Sequence)
			last = e.Sequence
		case <-time.After(30 * time.Second):
			t.Fatalf("live subscriber stuck after %d", last)
		}
	}
	// The tasks enqueued before the failover are all there, once.
	c, err := pub.Consume(ctx, bus.ConsumeParams{Queue: "tools"})
	require.NoError(t, err)
	seen := map[string]bool{}
	for len(seen) < 20 {
		nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		d, err := c.Next(nctx)
		cancel()
		require.NoError(t, err)
		require.False(t, seen[d.Task().ID], "task %s twice", d.Task().ID)
		seen[d.Task().ID] = true
		require.NoError(t, d.Ack(ctx))
	}

	// The stopped server comes back and catches up: with another server
	// stopped now, the events are still all there.
	cl.Restart(killed)
	cl.WaitReady()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		info := streamInfo(t, cfg)
		current := info.Cluster.Leader != ""
		for _, r := range info.Cluster.Replicas {
			current = current && r.Current && r.Lag == 0
		}
		if current && len(info.Cluster.Replicas) == 2 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the restarted server never caught up")
	}
	other := (killed + 1) % 3
	t.Logf("restarted n%d; stopping n%d", killed+1, other+1)
	cl.Kill(other)
	cl.WaitReady()
	require.Equal(t, seqs(1, n), readAll(t, cfg, "run_1", n))
}

func streamInfo(t *testing.T, cfg natsbus.Config) *jetstream.StreamInfo {
	t.Helper()
	js, err := jetstream.New(dialRaw(t, cfg.URL))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "AGENTOS_EVENTS")
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.NotNil(t, info.Cluster)
	return info
}

// streamLeader names the server leading the events stream ("n1".."n3").
func streamLeader(t *testing.T, cfg natsbus.Config) string {
	t.Helper()
	info := streamInfo(t, cfg)
	require.Len(t, info.Cluster.Replicas, 2, "three replicas")
	require.True(t, strings.HasPrefix(info.Cluster.Leader, "n"))
	return info.Cluster.Leader
}

// TestRestartFromDisk: a single server with sync_interval: always stops
// and starts again from its store: every acknowledged event and every
// unacknowledged task is still there.
// The local fan-out through the loss of the events stream's leader: its
// one consumer carries on (or is made again where it was), and a live
// subscriber gets every event once, in order (resuming from the history
// if it lagged, as a reader must).
func TestFanoutSurvivesLosingOneServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server cluster")
	}
	cl := natstest.Start(t, natstest.Options{Servers: 3})
	log := &bustest.Log{}
	cfg := natsbus.Config{URL: cl.URL(), Replicas: 3, Name: "fanout", History: log}
	pub := bustest.Committing(dial(t, cfg), log)
	subBus := dial(t, cfg)
	ctx := context.Background()
	sub, err := subBus.Subscribe(ctx, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1"})
	require.NoError(t, err)
	defer func() { sub.Close() }()

	const n, killAt = 300, 100
	got := make(chan []int64)
	go func() {
		var seen []int64
		var last int64
		for last < n {
			select {
			case e, ok := <-sub.C():
				if !ok {
					if !sub.Lagged() {
						t.Error("subscription ended, not lagged")
						got <- seen
						return
					}
					s, err := subBus.Subscribe(ctx, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1", Resume: true, After: last})
					if err != nil {
						t.Error(err)
						got <- seen
						return
					}
					sub = s
					continue
				}
				seen = append(seen, e.Sequence)
				last = e.Sequence
			case <-time.After(60 * time.Second):
				t.Errorf("live subscriber stuck after %d", last)
				got <- seen
				return
			}
		}
		got <- seen
	}()
	failed := 0
	for seq := int64(1); seq <= n; seq++ {
		if seq == killAt {
			leader := streamLeader(t, cfg)
			t.Logf("stopping %s, the events stream's leader", leader)
			cl.Kill(int(leader[1] - '1'))
		}
		failed += publishUntilAcked(t, pub, event("run_1", seq))
	}
	t.Logf("%d publish attempts failed during the failover and were retried", failed)
	require.Equal(t, seqs(1, n), <-got)
}

func TestRestartFromDisk(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{SyncAlways: true})
	cfg := natsbus.Config{URL: srv.URL()}
	b := dial(t, cfg)
	ctx := context.Background()
	for seq := int64(1); seq <= 50; seq++ {
		require.NoError(t, b.Publish(ctx, event("run_1", seq)))
	}
	require.NoError(t, b.Enqueue(ctx, bus.Task{Queue: "tools", ID: "t1", TenantID: "ten_a", Payload: []byte("x")}))
	c, err := b.Consume(ctx, bus.ConsumeParams{Queue: "tools", AckWait: time.Second})
	require.NoError(t, err)
	d, err := c.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, d.Attempt()) // taken, never acked: the worker dies with the server
	require.NoError(t, b.Close())

	srv.Kill(0)
	srv.Restart(0)

	require.Equal(t, seqs(1, 50), readAll(t, cfg, "run_1", 50))
	b2 := dial(t, cfg)
	c, err = b2.Consume(ctx, bus.ConsumeParams{Queue: "tools", AckWait: time.Second})
	require.NoError(t, err)
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d, err = c.Next(nctx)
	require.NoError(t, err)
	require.Equal(t, "t1", d.Task().ID)
	require.Equal(t, []byte("x"), d.Task().Payload)
	require.Equal(t, 2, d.Attempt())
	require.NoError(t, d.Ack(ctx))
}

func dialRaw(t *testing.T, url string) *natsio.Conn {
	t.Helper()
	nc, err := natsio.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// TestSubscriptionsLeaveNoConsumers: a closed or dropped subscription's
// consumer is deleted on the server, not left for the inactivity reaper.
func TestSubscriptionsLeaveNoConsumers(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	cfg := natsbus.Config{URL: srv.URL(), Namespace: "reap"}
	b := dial(t, cfg)
	ctx := context.Background()
	var subs []bus.Subscription[store.Event]
	for i := range 5 {
		s, err := b.Subscribe(ctx, bus.SubscribeParams{TenantID: "ten_a", RunID: fmt.Sprintf("run_%d", i), Resume: i%2 == 0})
		require.NoError(t, err)
		subs = append(subs, s)
	}
	deaf := subs[0] // never read: dropped as lagged
	for seq := int64(1); seq <= 3*bus.SubscriberBuffer; seq++ {
		require.NoError(t, b.Publish(ctx, event("run_0", seq)))
	}
	for range deaf.C() {
	}
	require.True(t, deaf.Lagged())
	for _, s := range subs[1:] {
		s.Close()
	}
	js, err := jetstream.New(dialRaw(t, cfg.URL))
	require.NoError(t, err)
	stream, err := js.Stream(ctx, "REAP_EVENTS")
	require.NoError(t, err)
	var consumers int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		if consumers = info.State.Consumers; consumers == 0 {
			break
		}
	}
	require.Zero(t, consumers, "consumers left on the server")
}

// TestPingFollowsTheServer: Ping (what /readyz asks) fails with
// dependency_unavailable while the server is down and succeeds again once
// it is back, on the same connection (nats.go reconnects by itself), and
// the bus publishes again.
func TestPingFollowsTheServer(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{SyncAlways: true})
	b := dial(t, natsbus.Config{URL: srv.URL()})
	ctx := context.Background()
	ping := func() error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return b.Ping(ctx)
	}
	require.NoError(t, ping())

	srv.Kill(0)
	err := ping()
	require.Error(t, err)
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "%v", err)

	srv.Restart(0)
	srv.WaitReady()
	require.Eventually(t, func() bool { return ping() == nil }, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, b.Publish(ctx, event("run_ping", 1)))
	require.NoError(t, b.Close())
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(ping()))
}
