// Package bustest is the conformance suite of the bus port: every adapter
// (in-process, NATS JetStream) runs Run from its own test.
package bustest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// Harness is one fresh bus.
type Harness struct {
	Bus bus.Bus
	// Connect opens another client of the same bus, as another replica
	// would (with NATS: another connection). The suite closes it.
	Connect func(t *testing.T) bus.Bus
}

// wait bounds every receive: a hang guard, not a timing assertion (the
// suite never asserts how fast anything is).
const wait = 20 * time.Second

// ackWait is the suite's work AckWait: short, so that redelivery after a
// consumer's death does not make the suite slow.
const ackWait = 500 * time.Millisecond

// Run exercises an adapter. newBus is called once per subtest (from
// parallel subtests) and must return an empty bus.
func Run(t *testing.T, newBus func(t *testing.T) Harness) {
	t.Run("OrderPerRun", func(t *testing.T) { t.Parallel(); testOrder(t, newBus(t)) })
	t.Run("DedupeByEventID", func(t *testing.T) { t.Parallel(); testDedupe(t, newBus(t)) })
	t.Run("TenantSubscription", func(t *testing.T) { t.Parallel(); testTenantSub(t, newBus(t)) })
	t.Run("NoCrossTenantDelivery", func(t *testing.T) { t.Parallel(); testNoCrossTenant(t, newBus(t)) })
	t.Run("SlowSubscriberIsDroppedAndResumes", func(t *testing.T) { t.Parallel(); testBackpressure(t, newBus(t)) })
	t.Run("Resume", func(t *testing.T) { t.Parallel(); testResume(t, newBus(t)) })
	t.Run("ResumedSubscriberNeverStallsPublishers", func(t *testing.T) { t.Parallel(); testResumeDeaf(t, newBus(t)) })
	t.Run("Signals", func(t *testing.T) { t.Parallel(); testSignals(t, newBus(t)) })
	t.Run("WorkAckAndDedupe", func(t *testing.T) { t.Parallel(); testWorkAck(t, newBus(t)) })
	t.Run("WorkRedeliveryAfterConsumerDies", func(t *testing.T) { t.Parallel(); testWorkRedelivery(t, newBus(t)) })
	t.Run("WorkNak", func(t *testing.T) { t.Parallel(); testWorkNak(t, newBus(t)) })
	t.Run("WorkOneConsumerPerTask", func(t *testing.T) { t.Parallel(); testWorkShared(t, newBus(t)) })
	t.Run("InvalidParams", func(t *testing.T) { t.Parallel(); testInvalid(t, newBus(t)) })
	t.Run("CloseEndsSubscriptions", func(t *testing.T) { t.Parallel(); testClose(t, newBus(t)) })
	t.Run("SubscriptionOutlivesItsContext", func(t *testing.T) { t.Parallel(); testOutlivesContext(t, newBus(t)) })
}

// ev is event seq of a run, with a fresh event_id.
func ev(tenant, run string, seq int64) store.Event {
	return store.Event{EventID: ids.New("evt_"), Sequence: seq, Type: "step.completed", TenantID: tenant,
		AgentID: "agt_1", RunID: run, Time: time.Unix(1700000000, 0).UTC(), Payload: []byte(`{"n":1}`)}
}

func publish(t *testing.T, b bus.Bus, evs ...store.Event) {
	t.Helper()
	require.NoError(t, b.Publish(context.Background(), evs...))
}

func subscribe(t *testing.T, b bus.Bus, p bus.SubscribeParams) bus.Subscription[store.Event] {
	t.Helper()
	s, err := b.Subscribe(context.Background(), p)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// recv takes the next event, failing if the subscription ends first.
func recv(t *testing.T, s bus.Subscription[store.Event]) store.Event {
	t.Helper()
	select {
	case e, ok := <-s.C():
		require.Truef(t, ok, "subscription ended (lagged=%v)", s.Lagged())
		return e
	case <-time.After(wait):
		t.Fatal("no event")
	}
	return store.Event{}
}

// until reads events until one has the sentinel's event_id; it returns
// those before it.
func until(t *testing.T, s bus.Subscription[store.Event], sentinel store.Event) []store.Event {
	t.Helper()
	var got []store.Event
	for {
		e := recv(t, s)
		if e.EventID == sentinel.EventID {
			return got
		}
		got = append(got, e)
	}
}

func seqs(evs []store.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Sequence
	}
	return out
}

func span(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// follow reads a run's events 1..n from s as a reader must: in order,
// and when it is dropped as lagged, resuming after the last one it
// handled. It returns the sequences it handled (and reports a
// subscription that ends otherwise with t.Error: it runs off the test's
// goroutine).
func follow(t *testing.T, b bus.Bus, s bus.Subscription[store.Event], tenant, run string, n int64) []int64 {
	var seen []int64
	var last int64
	for last < n {
		select {
		case e, ok := <-s.C():
			if ok {
				seen = append(seen, e.Sequence)
				last = e.Sequence
				continue
			}
			if !s.Lagged() {
				t.Errorf("run %s: subscription ended, not lagged", run)
				return seen
			}
			var err error
			s, err = b.Subscribe(context.Background(), bus.SubscribeParams{TenantID: tenant, RunID: run, Resume: true, After: last})
			if err != nil {
				t.Error(err)
				return seen
			}
			defer s.Close()
		case <-time.After(wait):
			t.Errorf("run %s: no event after %d", run, last)
			return seen
		}
	}
	return seen
}

func testOrder(t *testing.T, h Harness) {
	other := h.Connect(t)
	const n = 150
	runs := []string{"run_a", "run_b", "run_c"}
	clients := []bus.Bus{h.Bus, other} // a subscriber here and one on another replica
	subs := map[string][]bus.Subscription[store.Event]{}
	for _, r := range runs {
		for _, b := range clients {
			subs[r] = append(subs[r], subscribe(t, b, bus.SubscribeParams{TenantID: "ten_a", RunID: r}))
		}
	}
	var wg sync.WaitGroup
	got := map[string][][]int64{}
	for _, r := range runs {
		got[r] = make([][]int64, len(clients))
	}
	for _, r := range runs {
		res := got[r]
		for i, s := range subs[r] {
			wg.Go(func() { res[i] = follow(t, clients[i], s, "ten_a", r, n) })
		}
	}
	// Runs publish concurrently, each in commits of one to three events.
	var pub sync.WaitGroup
	for _, r := range runs {
		pub.Go(func() {
			for seq := int64(1); seq <= n; {
				k := min(1+seq%3, n-seq+1)
				batch := make([]store.Event, 0, k)
				for j := range k {
					batch = append(batch, ev("ten_a", r, seq+j))
				}
				if err := h.Bus.Publish(context.Background(), batch...); err != nil {
					t.Error(err)
					return
				}
				seq += k
			}
		})
	}
	pub.Wait()
	wg.Wait()
	for _, r := range runs {
		for i := range clients {
			require.Equalf(t, span(1, n), got[r][i], "run %s subscriber %d", r, i)
		}
	}
}

func testDedupe(t *testing.T, h Harness) {
	s := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1"})
	ts := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a"})
	e1, e2, e3 := ev("ten_a", "run_1", 1), ev("ten_a", "run_1", 2), ev("ten_a", "run_1", 3)
	publish(t, h.Bus, e1, e2)
	// A retry after an uncertain error publishes the same events again,
	// from this client and from another replica's.
	publish(t, h.Bus, e1, e2)
	other := h.Connect(t)
	publish(t, other, e2)
	publish(t, h.Bus, e3)
	sentinel := ev("ten_a", "run_1", 4)
	publish(t, h.Bus, sentinel)
	for _, sub := range []bus.Subscription[store.Event]{s, ts} {
		got := until(t, sub, sentinel)
		require.Equal(t, []int64{1, 2, 3}, seqs(got))
		require.Equal(t, []string{e1.EventID, e2.EventID, e3.EventID}, []string{got[0].EventID, got[1].EventID, got[2].EventID})
	}
	// The event arrives whole.
	e := e1
	got := until(t, subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1", Resume: true}), sentinel)
	require.Equal(t, e.EventID, got[0].EventID)
	require.Equal(t, e.Type, got[0].Type)
	require.Equal(t, e.AgentID, got[0].AgentID)
	require.True(t, e.Time.Equal(got[0].Time))
	require.JSONEq(t, string(e.Payload), string(got[0].Payload))
}

func testTenantSub(t *testing.T, h Harness) {
	s := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a"})
	var want []string
	for seq := int64(1); seq <= 5; seq++ {
		for _, r := range []string{"run_1", "run_2"} {
			e := ev("ten_a", r, seq)
			want = append(want, e.EventID)
			publish(t, h.Bus, e)
			publish(t, h.Bus, ev("ten_b", r, seq))
		}
	}
	sentinel := ev("ten_a", "run_3", 1)
	publish(t, h.Bus, sentinel)
	var got []string
	for _, e := range until(t, s, sentinel) {
		require.Equal(t, "ten_a", e.TenantID)
		got = append(got, e.EventID)
	}
	require.Equal(t, want, got)
}

// hostile ids: subject syntax (NATS tokens, wildcards), escapes, spaces.
var hostile = []string{"a", "a.b", "a.*", "*", ">", "a.>", "b", "a b", "a~2eb", "a%2Eb", "a\tb", "ä", "a/b", "."}

func testNoCrossTenant(t *testing.T, h Harness) {
	type key struct{ tenant, run string }
	tenantSubs := map[string]bus.Subscription[store.Event]{}
	runSubs := map[key]bus.Subscription[store.Event]{}
	for _, ten := range hostile {
		tenantSubs[ten] = subscribe(t, h.Bus, bus.SubscribeParams{TenantID: ten})
		for _, run := range hostile {
			runSubs[key{ten, run}] = subscribe(t, h.Bus, bus.SubscribeParams{TenantID: ten, RunID: run})
		}
	}
	for _, ten := range hostile {
		for _, run := range hostile {
			publish(t, h.Bus, ev(ten, run, 1))
		}
	}
	// Sentinels, in order after everything: seq 2 of each run, then one
	// event of run "end" per tenant.
	for _, ten := range hostile {
		for _, run := range hostile {
			publish(t, h.Bus, ev(ten, run, 2))
		}
	}
	ends := map[string]store.Event{}
	for _, ten := range hostile {
		ends[ten] = ev(ten, "end", 1)
		publish(t, h.Bus, ends[ten])
	}
	for k, s := range runSubs {
		e1, e2 := recv(t, s), recv(t, s)
		for _, e := range []store.Event{e1, e2} {
			require.Equalf(t, k, key{e.TenantID, e.RunID}, "subscriber of tenant %q run %q", k.tenant, k.run)
		}
		require.Equal(t, []int64{1, 2}, seqs([]store.Event{e1, e2}))
	}
	for ten, s := range tenantSubs {
		got := until(t, s, ends[ten])
		require.Lenf(t, got, 2*len(hostile), "tenant %q", ten)
		for _, e := range got {
			require.Equalf(t, ten, e.TenantID, "subscriber of tenant %q got an event of tenant %q", ten, e.TenantID)
		}
	}
}

func testBackpressure(t *testing.T, h Harness) {
	const n = 400
	slow := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1"})
	slowTenant := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a"})
	fast := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1"})
	fastDone := make(chan []int64)
	go func() { fastDone <- follow(t, h.Bus, fast, "ten_a", "run_1", n) }()
	// Publishers finish although two subscribers never read.
	var pub sync.WaitGroup
	for w := range 2 {
		pub.Go(func() {
			if w == 0 {
				for seq := int64(1); seq <= n; seq++ {
					if err := h.Bus.Publish(context.Background(), ev("ten_a", "run_1", seq)); err != nil {
						t.Error(err)
						return
					}
				}
				return
			}
			for seq := int64(1); seq <= n; seq++ { // another run of the tenant
				if err := h.Bus.Publish(context.Background(), ev("ten_a", "run_2", seq)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	pub.Wait()
	require.Equal(t, span(1, n), <-fastDone, "a reading subscriber gets everything")

	for _, s := range []bus.Subscription[store.Event]{slow, slowTenant} {
		var last int64
		deadline := time.After(wait)
	drain:
		for {
			select {
			case e, ok := <-s.C():
				if !ok {
					break drain
				}
				if e.RunID == "run_1" {
					require.Equal(t, last+1, e.Sequence, "what a lagged subscriber got has no gap")
					last = e.Sequence
				}
			case <-deadline:
				t.Fatal("the slow subscription was not dropped")
			}
		}
		require.True(t, s.Lagged())
		require.Less(t, last, int64(n))
	}

	// The slow reader resumes from the last sequence it handled.
	var resumed []bus.Subscription[store.Event]
	for _, after := range []int64{0, 17} {
		r := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1", Resume: true, After: after})
		resumed = append(resumed, r)
		var got []int64
		for len(got) < int(n-after) {
			got = append(got, recv(t, r).Sequence)
		}
		require.Equal(t, span(after+1, n), got)
	}
	live := ev("ten_a", "run_1", n+1)
	publish(t, h.Bus, live)
	for _, r := range resumed {
		require.Equal(t, live.EventID, recv(t, r).EventID)
		require.False(t, r.Lagged())
	}
}

func testResume(t *testing.T, h Harness) {
	for seq := int64(1); seq <= 10; seq++ {
		publish(t, h.Bus, ev("ten_a", "run_1", seq), ev("ten_a", "run_2", seq))
	}
	// Resuming from another replica, past the end, and from the start.
	other := h.Connect(t)
	r := subscribe(t, other, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1", Resume: true, After: 4})
	end := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1", Resume: true, After: 10})
	all := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1", Resume: true})
	live := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1"})
	publish(t, h.Bus, ev("ten_a", "run_1", 11), ev("ten_a", "run_1", 12))
	check := func(s bus.Subscription[store.Event], from int64) {
		var got []int64
		for len(got) < int(12-from+1) {
			e := recv(t, s)
			require.Equal(t, "run_1", e.RunID)
			got = append(got, e.Sequence)
		}
		require.Equal(t, span(from, 12), got)
	}
	check(r, 5)
	check(end, 11)
	check(all, 1)
	check(live, 11) // without Resume: only what came after Subscribe
}

func testResumeDeaf(t *testing.T, h Harness) {
	for seq := int64(1); seq <= 50; seq++ {
		publish(t, h.Bus, ev("ten_a", "run_1", seq))
	}
	// Replaying history waits for its reader; live events do not.
	deaf := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1", Resume: true})
	first := recv(t, deaf)
	require.Equal(t, int64(1), first.Sequence)
	for seq := int64(51); seq <= 50+10*bus.SubscriberBuffer; seq++ {
		publish(t, h.Bus, ev("ten_a", "run_1", seq))
	}
	// The publishers are done; a fresh reader gets everything, and closing
	// the deaf one returns.
	r := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1", Resume: true, After: 50})
	n := 10 * bus.SubscriberBuffer
	var got []int64
	for len(got) < n {
		got = append(got, recv(t, r).Sequence)
	}
	require.Equal(t, span(51, int64(50+n)), got)
	deaf.Close()
}

func recvSignal(t *testing.T, s bus.Subscription[bus.Signal]) bus.Signal {
	t.Helper()
	select {
	case sig, ok := <-s.C():
		require.True(t, ok, "signal subscription ended")
		return sig
	case <-time.After(wait):
		t.Fatal("no signal")
	}
	return bus.Signal{}
}

func testSignals(t *testing.T, h Harness) {
	ctx := context.Background()
	other := h.Connect(t)
	var subs []bus.Subscription[bus.Signal]
	for _, b := range []bus.Bus{h.Bus, other} {
		s, err := b.SubscribeSignals(ctx)
		require.NoError(t, err)
		t.Cleanup(s.Close)
		subs = append(subs, s)
	}
	sent := []bus.Signal{
		{Kind: bus.SignalCancel, TenantID: "a.>", RunID: "run_*", Reason: "user asked"},
		{Kind: bus.SignalWake},
		{Kind: bus.SignalWake, TenantID: "ten_b"},
		{Kind: bus.SignalInvalidate, TenantID: "ten_c", Entity: bus.EntityAgent, ID: "agt_1", Reason: "replica 1"},
	}
	require.NoError(t, h.Bus.Signal(ctx, sent[0]))
	require.NoError(t, other.Signal(ctx, sent[1]))
	require.NoError(t, h.Bus.Signal(ctx, sent[2]))
	require.NoError(t, other.Signal(ctx, sent[3]))
	for _, s := range subs {
		got := map[string]bus.Signal{}
		for range sent {
			sig := recvSignal(t, s)
			got[sig.Kind+"/"+sig.TenantID] = sig
		}
		for _, want := range sent {
			require.Equal(t, want, got[want.Kind+"/"+want.TenantID])
		}
	}
	// A signal subscriber that never reads is dropped; senders go on.
	deaf, err := h.Bus.SubscribeSignals(ctx)
	require.NoError(t, err)
	defer deaf.Close()
	for range 10 * bus.SubscriberBuffer {
		require.NoError(t, h.Bus.Signal(ctx, bus.Signal{Kind: bus.SignalWake}))
	}
	deadline := time.After(wait)
	for open := true; open; {
		select {
		case _, open = <-deaf.C():
		case <-deadline:
			t.Fatal("the deaf signal subscription was not dropped")
		}
	}
	require.True(t, deaf.Lagged())
}

func consume(t *testing.T, b bus.Bus, queue string, ackWait time.Duration) bus.Consumer {
	t.Helper()
	c, err := b.Consume(context.Background(), bus.ConsumeParams{Queue: queue, AckWait: ackWait})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func next(t *testing.T, c bus.Consumer) bus.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	d, err := c.Next(ctx)
	require.NoError(t, err)
	return d
}

// nothing asserts that no task is delivered within d.
func nothing(t *testing.T, c bus.Consumer, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	got, err := c.Next(ctx)
	if err == nil {
		t.Fatalf("unexpected delivery of task %s (attempt %d)", got.Task().ID, got.Attempt())
	}
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func task(queue, id string) bus.Task {
	return bus.Task{Queue: queue, ID: id, TenantID: "ten_a", Payload: []byte("payload of " + id)}
}

func testWorkAck(t *testing.T, h Harness) {
	ctx := context.Background()
	require.NoError(t, h.Bus.Enqueue(ctx, task("tools", "t1")))
	require.NoError(t, h.Bus.Enqueue(ctx, task("tools", "t1"))) // a retried enqueue
	require.NoError(t, h.Bus.Enqueue(ctx, task("tools", "t2")))
	require.NoError(t, h.Bus.Enqueue(ctx, task("other", "t3")))
	c := consume(t, h.Bus, "tools", bus.DefaultAckWait)
	d := next(t, c)
	require.Equal(t, task("tools", "t1"), d.Task())
	require.Equal(t, 1, d.Attempt())
	require.NoError(t, d.Ack(ctx))
	d = next(t, c)
	require.Equal(t, task("tools", "t2"), d.Task())
	require.NoError(t, d.Ack(ctx))
	nothing(t, c, 3*ackWait)
	d = next(t, consume(t, h.Bus, "other", bus.DefaultAckWait))
	require.Equal(t, "t3", d.Task().ID)
	require.NoError(t, d.Ack(ctx))
}

func testWorkRedelivery(t *testing.T, h Harness) {
	ctx := context.Background()
	require.NoError(t, h.Bus.Enqueue(ctx, task("tools", "t1")))
	// A worker on another replica takes the task and dies without acking.
	replica := h.Connect(t)
	dying := consume(t, replica, "tools", ackWait)
	d := next(t, dying)
	require.Equal(t, "t1", d.Task().ID)
	require.NoError(t, dying.Close())
	require.NoError(t, replica.Close())

	c := consume(t, h.Bus, "tools", ackWait)
	d = next(t, c)
	require.Equal(t, task("tools", "t1"), d.Task())
	require.Equal(t, 2, d.Attempt())
	require.NoError(t, d.Ack(ctx))
	nothing(t, c, 3*ackWait)
}

func testWorkNak(t *testing.T, h Harness) {
	ctx := context.Background()
	require.NoError(t, h.Bus.Enqueue(ctx, task("tools", "t1")))
	c := consume(t, h.Bus, "tools", bus.DefaultAckWait)
	d := next(t, c)
	require.NoError(t, d.Nak(ctx, 0))
	d = next(t, c)
	require.Equal(t, "t1", d.Task().ID)
	require.Equal(t, 2, d.Attempt())
	require.NoError(t, d.Nak(ctx, ackWait))
	d = next(t, c)
	require.Equal(t, 3, d.Attempt())
	require.NoError(t, d.Ack(ctx))
	nothing(t, c, 3*ackWait)
}

func testWorkShared(t *testing.T, h Harness) {
	ctx := context.Background()
	const n = 60
	for i := range n {
		require.NoError(t, h.Bus.Enqueue(ctx, task("tools", fmt.Sprintf("t%02d", i))))
	}
	other := h.Connect(t)
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i := range 4 {
		b := h.Bus
		if i%2 == 1 {
			b = other
		}
		c := consume(t, b, "tools", bus.DefaultAckWait)
		wg.Go(func() {
			for {
				cctx, cancel := context.WithCancel(ctx)
				go func() {
					select {
					case <-done:
					case <-time.After(wait):
					}
					cancel()
				}()
				d, err := c.Next(cctx)
				cancel()
				if err != nil {
					return
				}
				mu.Lock()
				seen[d.Task().ID]++
				total := len(seen)
				mu.Unlock()
				if err := d.Ack(ctx); err != nil {
					t.Error(err)
				}
				if total == n {
					select {
					case <-done:
					default:
						close(done)
					}
				}
			}
		})
	}
	wg.Wait()
	require.Len(t, seen, n)
	for id, k := range seen {
		require.Equalf(t, 1, k, "task %s delivered %d times", id, k)
	}
}

func requireField(t *testing.T, err error, field string) {
	t.Helper()
	var e *errs.Error
	require.Truef(t, errors.As(err, &e), "want an errs.Error, got %v", err)
	require.Equal(t, errs.InvalidRequest, e.Code)
	require.Equal(t, field, e.Details["field"], e.Message)
}

func testInvalid(t *testing.T, h Harness) {
	ctx := context.Background()
	s := subscribe(t, h.Bus, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1"})
	good := ev("ten_a", "run_1", 1)
	for field, bad := range map[string]store.Event{
		"event_id":  {TenantID: "ten_a", RunID: "run_1", Sequence: 1},
		"tenant_id": {EventID: "evt_x", RunID: "run_1", Sequence: 1},
		"run_id":    {EventID: "evt_x", TenantID: "ten_a", Sequence: 1},
		"sequence":  {EventID: "evt_x", TenantID: "ten_a", RunID: "run_1"},
	} {
		// A batch with one bad event publishes nothing.
		requireField(t, h.Bus.Publish(ctx, good, bad), field)
	}
	sentinel := ev("ten_a", "run_1", 2)
	publish(t, h.Bus, sentinel)
	require.Empty(t, until(t, s, sentinel))

	_, err := h.Bus.Subscribe(ctx, bus.SubscribeParams{RunID: "run_1"})
	requireField(t, err, "tenant_id")
	_, err = h.Bus.Subscribe(ctx, bus.SubscribeParams{TenantID: "ten_a", Resume: true})
	requireField(t, err, "run_id")
	_, err = h.Bus.Subscribe(ctx, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1", Resume: true, After: -1})
	requireField(t, err, "after")

	requireField(t, h.Bus.Signal(ctx, bus.Signal{}), "kind")
	requireField(t, h.Bus.Signal(ctx, bus.Signal{Kind: "reboot"}), "kind")
	requireField(t, h.Bus.Signal(ctx, bus.Signal{Kind: bus.SignalCancel, RunID: "run_1"}), "tenant_id")
	requireField(t, h.Bus.Signal(ctx, bus.Signal{Kind: bus.SignalCancel, TenantID: "ten_a"}), "run_id")
	requireField(t, h.Bus.Signal(ctx, bus.Signal{Kind: bus.SignalInvalidate, Entity: bus.EntityTenant}), "tenant_id")
	requireField(t, h.Bus.Signal(ctx, bus.Signal{Kind: bus.SignalInvalidate, TenantID: "ten_a", Entity: "thread"}), "entity")
	requireField(t, h.Bus.Signal(ctx, bus.Signal{Kind: bus.SignalInvalidate, TenantID: "ten_a", Entity: bus.EntityToken}), "id")

	for _, q := range []string{"", "a.b", "*", ">", "Tools", "a b"} {
		requireField(t, h.Bus.Enqueue(ctx, bus.Task{Queue: q, ID: "t1", TenantID: "ten_a"}), "queue")
		_, err = h.Bus.Consume(ctx, bus.ConsumeParams{Queue: q})
		requireField(t, err, "queue")
	}
	requireField(t, h.Bus.Enqueue(ctx, bus.Task{Queue: "tools", TenantID: "ten_a"}), "id")
	requireField(t, h.Bus.Enqueue(ctx, bus.Task{Queue: "tools", ID: "t1"}), "tenant_id")
	_, err = h.Bus.Consume(ctx, bus.ConsumeParams{Queue: "tools", AckWait: -time.Second})
	requireField(t, err, "ack_wait")
	nothing(t, consume(t, h.Bus, "tools", ackWait), 2*ackWait)
}

func testClose(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.Connect(t)
	s := subscribe(t, b, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_1"})
	ts := subscribe(t, b, bus.SubscribeParams{TenantID: "ten_a"})
	sig, err := b.SubscribeSignals(ctx)
	require.NoError(t, err)
	c := consume(t, b, "tools", ackWait)
	nextErr := make(chan error, 1)
	go func() {
		_, err := c.Next(ctx)
		nextErr <- err
	}()
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "Close is idempotent")
	for _, sub := range []bus.Subscription[store.Event]{s, ts} {
		_, open := <-sub.C()
		require.False(t, open)
		require.False(t, sub.Lagged())
	}
	_, open := <-sig.C()
	require.False(t, open)
	select {
	case err := <-nextErr:
		require.Error(t, err)
	case <-time.After(wait):
		t.Fatal("Next did not return after Close")
	}
	require.Error(t, b.Publish(ctx, ev("ten_a", "run_1", 1)))
}

// testOutlivesContext: Subscribe's ctx bounds making the subscription
// only (callers bound it with a short timeout); the subscription, plain or
// resumed, delivers after that ctx has ended, until Close.
func testOutlivesContext(t *testing.T, h Harness) {
	ctx := context.Background()
	require.NoError(t, h.Bus.Publish(ctx, ev("ten_a", "run_ctx", 1)))
	for _, c := range []struct {
		seq    int64
		resume bool
	}{{2, false}, {3, true}} {
		seq, resume := c.seq, c.resume
		sctx, cancel := context.WithCancel(ctx)
		s, err := h.Bus.Subscribe(sctx, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_ctx", Resume: resume, After: seq - 1})
		require.NoError(t, err)
		cancel()
		require.NoError(t, h.Bus.Publish(ctx, ev("ten_a", "run_ctx", seq)))
		require.Equal(t, seq, recv(t, s).Sequence, "resume %v", resume)
		s.Close()
	}
}
