// Package queuetest is the conformance suite of the queue port: every
// adapter (SQLite, PostgreSQL, fakes) runs Run from its own test. Runs enter
// the queue as in production, through the store's CreateRun.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/queue"
	"github.com/nexixai/agentos/internal/store"
)

// Harness is one fresh, empty queue, the store whose CreateRun admits runs
// into it, and control over the queue's clock.
type Harness struct {
	Queue queue.Queue
	// Runs admits runs into Queue (CreateRun enqueues a queued run in its
	// admission transaction).
	Runs store.RunStore
	// Advance moves the queue's clock forward by d, so that leases whose
	// TTL is at most d have expired afterwards. An adapter with a fake
	// clock just adds d; one bound to real time may sleep. nil skips the
	// subtests that need leases to expire.
	Advance func(d time.Duration)
}

// Clock is a settable clock safe for concurrent use: an adapter's test sets
// the queue's clock to Now and the Harness's Advance to Advance.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at a fixed time.
func NewClock() *Clock { return &Clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// ttl is the lease TTL the suite uses; Advance(2*ttl) expires a lease.
const ttl = 30 * time.Second

// Run exercises an adapter. newQueue is called once per subtest (from
// parallel subtests) and must return an empty queue.
func Run(t *testing.T, newQueue func(t *testing.T) Harness) {
	t.Run("AdmittedOnce", func(t *testing.T) { t.Parallel(); testAdmittedOnce(t, newQueue(t)) })
	t.Run("LeaseRenewAck", func(t *testing.T) { t.Parallel(); testLeaseRenewAck(t, newQueue(t)) })
	t.Run("LostLease", func(t *testing.T) { t.Parallel(); testLostLease(t, newQueue(t)) })
	t.Run("ExpiredLeaseIsLeasedAgain", func(t *testing.T) { t.Parallel(); testExpiry(t, newQueue(t)) })
	t.Run("RenewKeepsLease", func(t *testing.T) { t.Parallel(); testRenewKeeps(t, newQueue(t)) })
	t.Run("TenantLimit", func(t *testing.T) { t.Parallel(); testTenantLimit(t, newQueue(t)) })
	t.Run("PausedTenant", func(t *testing.T) { t.Parallel(); testPausedTenant(t, newQueue(t)) })
	t.Run("FairnessNewTenantFirst", func(t *testing.T) { t.Parallel(); testFairnessMax2(t, newQueue(t)) })
	t.Run("FairnessMaxOne", func(t *testing.T) { t.Parallel(); testFairnessMax1(t, newQueue(t)) })
	t.Run("RoundRobin", func(t *testing.T) { t.Parallel(); testRoundRobin(t, newQueue(t)) })
	t.Run("Priority", func(t *testing.T) { t.Parallel(); testPriority(t, newQueue(t)) })
	t.Run("ConcurrentLeasers", func(t *testing.T) { t.Parallel(); testConcurrentLeasers(t, newQueue(t)) })
	t.Run("Depth", func(t *testing.T) { t.Parallel(); testDepth(t, newQueue(t)) })
	t.Run("InvalidParams", func(t *testing.T) { t.Parallel(); testInvalid(t, newQueue(t)) })
}

func needsClock(t *testing.T, h Harness) {
	t.Helper()
	if h.Advance == nil {
		t.Skip("adapter cannot advance its clock")
	}
}

// admit creates a queued run through the store, which enqueues it.
func admit(t *testing.T, h Harness, p store.CreateRunParams) store.CreateRunResult {
	t.Helper()
	res, err := h.Runs.CreateRun(context.Background(), p)
	require.NoError(t, err)
	return res
}

func enqueue(t *testing.T, h Harness, tenant, run string, prio int) {
	t.Helper()
	admit(t, h, store.CreateRunParams{Run: store.Run{TenantID: tenant, AgentID: "agt_1", RunID: run}, Priority: prio})
}

func lease(t *testing.T, q queue.Queue, owner string, max int) []queue.Lease {
	t.Helper()
	ls, err := q.Lease(context.Background(), queue.LeaseParams{Owner: owner, Max: max, TTL: ttl})
	require.NoError(t, err)
	require.LessOrEqual(t, len(ls), max)
	return ls
}

func requireConflict(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.Truef(t, errors.Is(err, errs.ErrConflict), "want conflict, got %v", err)
}

// testAdmittedOnce: a run is in the queue once, however often its
// admission is replayed, and only while it is queued.
func testAdmittedOnce(t *testing.T, h Harness) {
	ctx := context.Background()
	q := h.Queue
	p := store.CreateRunParams{Run: store.Run{TenantID: "ten_a", AgentID: "agt_1"}, IdempotencyKey: "k1",
		Fingerprint: "f1", Priority: queue.PriorityNormal}
	first := admit(t, h, p)
	require.False(t, first.Replayed)
	require.True(t, admit(t, h, p).Replayed)
	// A run admitted in another state (as a resumed or imported run) is not queued.
	admit(t, h, store.CreateRunParams{Run: store.Run{TenantID: "ten_a", AgentID: "agt_1", RunID: "run_done",
		Status: store.RunCompleted}})
	d, err := q.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"ten_a": 1}, d.Queued)

	ls := lease(t, q, "w1", 10)
	require.Len(t, ls, 1)
	require.Equal(t, first.Run.RunID, ls[0].RunID)
	require.True(t, admit(t, h, p).Replayed) // while leased: left as is
	require.Empty(t, lease(t, q, "w2", 10))
	d, err = q.Depth(ctx)
	require.NoError(t, err)
	require.Empty(t, d.Queued)
	require.Equal(t, map[string]int{"ten_a": 1}, d.Leased)
	require.NoError(t, q.Ack(ctx, ls[0]))
}

func testLeaseRenewAck(t *testing.T, h Harness) {
	ctx := context.Background()
	q := h.Queue
	enqueue(t, h, "ten_a", "run_1", queue.PriorityNormal)
	ls := lease(t, q, "w1", 5)
	require.Len(t, ls, 1)
	l := ls[0]
	require.Equal(t, "ten_a", l.TenantID)
	require.Equal(t, "run_1", l.RunID)
	require.Equal(t, "w1", l.Owner)
	require.NotEmpty(t, l.Token)
	require.False(t, l.ExpiresAt.IsZero())
	require.Equal(t, 1, l.Attempt)

	if h.Advance != nil {
		h.Advance(ttl / 2)
	}
	r, err := q.Renew(ctx, l, ttl)
	require.NoError(t, err)
	require.Equal(t, l.Token, r.Token)
	require.Equal(t, l.RunID, r.RunID)
	require.Equal(t, l.Attempt, r.Attempt)
	require.False(t, r.ExpiresAt.Before(l.ExpiresAt))
	if h.Advance != nil {
		require.True(t, r.ExpiresAt.After(l.ExpiresAt))
	}

	require.NoError(t, q.Ack(ctx, r))
	requireConflict(t, q.Ack(ctx, r))
	_, err = q.Renew(ctx, r, ttl)
	requireConflict(t, err)
	require.Empty(t, lease(t, q, "w1", 5))
	d, err := q.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, d.Queued["ten_a"]+d.Leased["ten_a"])

	// A forged token is not the lease.
	enqueue(t, h, "ten_a", "run_2", queue.PriorityNormal)
	l2 := lease(t, q, "w1", 1)[0]
	forged := l2
	forged.Token = "lse_forged"
	requireConflict(t, q.Ack(ctx, forged))
	_, err = q.Renew(ctx, forged, ttl)
	requireConflict(t, err)
	require.NoError(t, q.Ack(ctx, l2))
}

func testLostLease(t *testing.T, h Harness) {
	needsClock(t, h)
	ctx := context.Background()
	q := h.Queue
	enqueue(t, h, "ten_a", "run_1", queue.PriorityNormal)
	old := lease(t, q, "w1", 1)[0]
	h.Advance(2 * ttl)
	ls := lease(t, q, "w2", 1)
	require.Len(t, ls, 1)
	cur := ls[0]
	require.Equal(t, "run_1", cur.RunID)
	require.Equal(t, "w2", cur.Owner)
	require.NotEqual(t, old.Token, cur.Token)
	require.Equal(t, 2, cur.Attempt)

	_, err := q.Renew(ctx, old, ttl)
	requireConflict(t, err)
	requireConflict(t, q.Ack(ctx, old))
	_, err = q.Renew(ctx, cur, ttl)
	require.NoError(t, err)
	require.NoError(t, q.Ack(ctx, cur))
}

func testExpiry(t *testing.T, h Harness) {
	needsClock(t, h)
	ctx := context.Background()
	q := h.Queue
	enqueue(t, h, "ten_a", "run_1", queue.PriorityNormal)
	for attempt := 1; attempt <= 3; attempt++ {
		ls := lease(t, q, fmt.Sprintf("w%d", attempt), 3)
		require.Len(t, ls, 1)
		require.Equal(t, attempt, ls[0].Attempt)
		require.Empty(t, lease(t, q, "other", 3), "an unexpired lease is not leased twice")
		h.Advance(2 * ttl)
	}
	d, err := q.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, d.Queued["ten_a"], "an expired lease counts as queued")
	require.Zero(t, d.Leased["ten_a"])
}

func testRenewKeeps(t *testing.T, h Harness) {
	needsClock(t, h)
	ctx := context.Background()
	q := h.Queue
	enqueue(t, h, "ten_a", "run_1", queue.PriorityNormal)
	l := lease(t, q, "w1", 1)[0]
	for range 4 {
		h.Advance(ttl * 2 / 3)
		var err error
		l, err = q.Renew(ctx, l, ttl)
		require.NoError(t, err)
		require.Empty(t, lease(t, q, "w2", 1))
	}
	require.NoError(t, q.Ack(ctx, l))
}

func testTenantLimit(t *testing.T, h Harness) {
	ctx := context.Background()
	q := h.Queue
	for i := range 5 {
		enqueue(t, h, "ten_a", fmt.Sprintf("run_a%d", i), queue.PriorityNormal)
		enqueue(t, h, "ten_b", fmt.Sprintf("run_b%d", i), queue.PriorityNormal)
	}
	limits := func(tenant string) int {
		if tenant == "ten_a" {
			return 2
		}
		return 0
	}
	leaseLimited := func() []queue.Lease {
		ls, err := q.Lease(ctx, queue.LeaseParams{Owner: "w", Max: 10, TTL: ttl, TenantLimit: limits})
		require.NoError(t, err)
		return ls
	}
	count := func(ls []queue.Lease) map[string]int {
		m := map[string]int{}
		for _, l := range ls {
			m[l.TenantID]++
		}
		return m
	}
	first := leaseLimited()
	require.Equal(t, map[string]int{"ten_a": 2, "ten_b": 5}, count(first))
	require.Empty(t, leaseLimited(), "ten_a is at its limit, ten_b has nothing left")

	var aLease queue.Lease
	for _, l := range first {
		if l.TenantID == "ten_a" {
			aLease = l
		}
	}
	require.NoError(t, q.Ack(ctx, aLease))
	require.Equal(t, map[string]int{"ten_a": 1}, count(leaseLimited()))
	require.Empty(t, leaseLimited())

	if h.Advance != nil {
		// Expired leases no longer count against the limit.
		h.Advance(2 * ttl)
		require.Equal(t, map[string]int{"ten_a": 2, "ten_b": 5}, count(leaseLimited()))
	}
}

// testFairnessMax2: tenant A has a deep backlog and has been served; B
// enqueues one run afterwards and gets it in the very next Lease of Max 2.
func testFairnessMax2(t *testing.T, h Harness) {
	q := h.Queue
	for i := range 1000 {
		enqueue(t, h, "ten_a", fmt.Sprintf("run_a%04d", i), queue.PriorityNormal)
	}
	require.Len(t, lease(t, q, "w", 2), 2)
	enqueue(t, h, "ten_b", "run_b", queue.PriorityNormal)
	ls := lease(t, q, "w", 2)
	require.Len(t, ls, 2)
	require.Contains(t, []string{ls[0].RunID, ls[1].RunID}, "run_b")
}

// testFairnessMax1: with Max 1, B's run comes within two Lease calls even
// though A is at least as old.
func testFairnessMax1(t *testing.T, h Harness) {
	q := h.Queue
	for i := range 1000 {
		enqueue(t, h, "ten_a", fmt.Sprintf("run_a%04d", i), queue.PriorityHigh)
	}
	enqueue(t, h, "ten_b", "run_b", queue.PriorityLow)
	var got []string
	for range 2 {
		ls := lease(t, q, "w", 1)
		require.Len(t, ls, 1)
		got = append(got, ls[0].RunID)
	}
	require.Contains(t, got, "run_b")
}

// testRoundRobin: every round serves each tenant with work once.
func testRoundRobin(t *testing.T, h Harness) {
	q := h.Queue
	tenants := []string{"ten_a", "ten_b", "ten_c"}
	for _, ten := range tenants {
		for i := range 4 {
			enqueue(t, h, ten, fmt.Sprintf("run_%s_%d", ten, i), queue.PriorityNormal)
		}
	}
	var order []string
	for len(order) < 12 {
		ls := lease(t, q, "w", 2) // rounds span calls
		require.NotEmpty(t, ls)
		for _, l := range ls {
			order = append(order, l.TenantID)
		}
	}
	for r := 0; r < 12; r += 3 {
		round := map[string]bool{}
		for _, ten := range order[r : r+3] {
			round[ten] = true
		}
		require.Len(t, round, 3, "round %d served %v", r/3, order[r:r+3])
	}
	require.Empty(t, lease(t, q, "w", 2))
}

func testPriority(t *testing.T, h Harness) {
	q := h.Queue
	enqueue(t, h, "ten_a", "run_low", queue.PriorityLow)
	enqueue(t, h, "ten_a", "run_normal1", queue.PriorityNormal)
	enqueue(t, h, "ten_a", "run_high1", queue.PriorityHigh)
	enqueue(t, h, "ten_a", "run_normal2", queue.PriorityNormal)
	enqueue(t, h, "ten_a", "run_high2", queue.PriorityHigh)
	var got []string
	for range 5 {
		ls := lease(t, q, "w", 1)
		require.Len(t, ls, 1)
		got = append(got, ls[0].RunID)
	}
	require.Equal(t, []string{"run_high1", "run_high2", "run_normal1", "run_normal2", "run_low"}, got)

	// In one call, rounds repeat until Max: the only tenant gets all three,
	// still in priority order.
	for i := range 3 {
		enqueue(t, h, "ten_b", fmt.Sprintf("run_b%d", i), i) // b0 low, b1 normal, b2 high
	}
	ls := lease(t, q, "w", 3)
	require.Len(t, ls, 3)
	require.Equal(t, []string{"run_b2", "run_b1", "run_b0"}, []string{ls[0].RunID, ls[1].RunID, ls[2].RunID})
}

func testConcurrentLeasers(t *testing.T, h Harness) {
	ctx := context.Background()
	q := h.Queue
	const total = 60
	for i := range total {
		enqueue(t, h, fmt.Sprintf("ten_%d", i%5), fmt.Sprintf("run_%02d", i), i%3)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ls, err := q.Lease(ctx, queue.LeaseParams{Owner: fmt.Sprintf("w%d", w), Max: 3, TTL: ttl})
				if err != nil {
					t.Errorf("lease: %v", err)
					return
				}
				if len(ls) == 0 {
					return
				}
				mu.Lock()
				for _, l := range ls {
					seen[l.TenantID+"/"+l.RunID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, seen, total)
	for k, n := range seen {
		require.Equal(t, 1, n, "%s leased %d times", k, n)
	}
}

func testDepth(t *testing.T, h Harness) {
	ctx := context.Background()
	q := h.Queue
	d, err := q.Depth(ctx)
	require.NoError(t, err)
	require.Empty(t, d.Queued)
	require.Empty(t, d.Leased)
	for i := range 3 {
		enqueue(t, h, "ten_a", fmt.Sprintf("run_a%d", i), queue.PriorityNormal)
	}
	enqueue(t, h, "ten_b", "run_b0", queue.PriorityNormal)
	ls := lease(t, q, "w", 1)
	require.Len(t, ls, 1)
	leased := ls[0].TenantID
	d, err = q.Depth(ctx)
	require.NoError(t, err)
	want := map[string]int{"ten_a": 3, "ten_b": 1}
	want[leased]--
	for k, v := range want {
		if v == 0 {
			delete(want, k)
		}
	}
	require.Equal(t, want, d.Queued)
	require.Equal(t, map[string]int{leased: 1}, d.Leased)

	require.NoError(t, q.Ack(ctx, ls[0]))
	if h.Advance != nil {
		ls = lease(t, q, "w", 10)
		require.Len(t, ls, 3)
		h.Advance(2 * ttl)
		d, err = q.Depth(ctx)
		require.NoError(t, err)
		require.Empty(t, d.Leased)
		total := 0
		for _, n := range d.Queued {
			total += n
		}
		require.Equal(t, 3, total)
	}
}

func testInvalid(t *testing.T, h Harness) {
	ctx := context.Background()
	q := h.Queue
	isInvalid := func(err error) {
		t.Helper()
		require.Truef(t, errors.Is(err, errs.ErrInvalid), "want invalid_request, got %v", err)
	}
	enqueue(t, h, "ten_a", "run_1", queue.PriorityNormal)
	_, err := q.Lease(ctx, queue.LeaseParams{Max: 1, TTL: ttl})
	isInvalid(err)
	_, err = q.Lease(ctx, queue.LeaseParams{Owner: "w", Max: 0, TTL: ttl})
	isInvalid(err)
	_, err = q.Lease(ctx, queue.LeaseParams{Owner: "w", Max: 1})
	isInvalid(err)
	// Nothing was leased by the refused calls.
	require.Len(t, lease(t, q, "w", 1), 1)
}

// testPausedTenant: a negative limit pauses a tenant; its entries wait
// (they are not lost) and are leased once the pause ends.
func testPausedTenant(t *testing.T, h Harness) {
	ctx := context.Background()
	q := h.Queue
	enqueue(t, h, "ten_a", "run_a1", queue.PriorityNormal)
	enqueue(t, h, "ten_b", "run_b1", queue.PriorityNormal)
	paused := func(tenant string) int {
		if tenant == "ten_a" {
			return -1
		}
		return 0
	}
	ls, err := q.Lease(ctx, queue.LeaseParams{Owner: "w", Max: 10, TTL: ttl, TenantLimit: paused})
	require.NoError(t, err)
	require.Len(t, ls, 1)
	require.Equal(t, "ten_b", ls[0].TenantID)
	ls, err = q.Lease(ctx, queue.LeaseParams{Owner: "w", Max: 10, TTL: ttl, TenantLimit: func(string) int { return 0 }})
	require.NoError(t, err)
	require.Len(t, ls, 1)
	require.Equal(t, "run_a1", ls[0].RunID)
}
