package dispatch

import (
	"context"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/workerproto"
)

// Fairness across tenants sharing a pool. A JetStream work queue is first
// in, first out: a tenant that places a thousand calls at once would make
// every other tenant's call wait behind them. So the dispatcher holds
// calls for a shared pool itself once the pool is busy (as many calls in
// flight as its live workers' concurrency), and lets the next one go in
// round-robin order of tenants: each tenant with a call waiting gets the
// next free slot in turn, however many calls it has waiting.
//
// The gate is per replica: with R orchestrator replicas a pool may have
// up to R times its concurrency queued, first in, first out among them.
// Calls to a tenant's dedicated workers do not pass through it.

// fairGate admits calls to one shared queue.
type fairGate struct {
	mu       sync.Mutex
	inFlight int
	waiting  map[string][]chan struct{} // by tenant, oldest first
	order    []string                   // tenants with calls waiting, next first
}

func newFairGate() *fairGate { return &fairGate{waiting: map[string][]chan struct{}{}} }

// acquire waits for a slot for tenant until ctx ends or the deadline
// passes (ok false). capacity is the pool's current concurrency; it is
// read again every pumpEvery, since workers come and go.
func (g *fairGate) acquire(ctx context.Context, tenant string, deadline time.Time, capacity func() int) bool {
	g.mu.Lock()
	if g.inFlight < max(capacity(), 1) && len(g.order) == 0 {
		g.inFlight++
		g.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	if len(g.waiting[tenant]) == 0 {
		g.order = append(g.order, tenant)
	}
	g.waiting[tenant] = append(g.waiting[tenant], ch)
	g.mu.Unlock()

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	tick := time.NewTicker(pumpEvery)
	defer tick.Stop()
	for {
		select {
		case <-ch:
			return true
		case <-tick.C:
			g.pump(capacity())
		case <-ctx.Done():
			return g.leave(tenant, ch)
		case <-timer.C:
			return g.leave(tenant, ch)
		}
	}
}

// pumpEvery is how often a waiting call looks at the pool's capacity.
const pumpEvery = 100 * time.Millisecond

// leave withdraws a waiting call; if it was admitted meanwhile, the slot
// goes to the next one.
func (g *fairGate) leave(tenant string, ch chan struct{}) bool {
	g.mu.Lock()
	q := g.waiting[tenant]
	for i, c := range q {
		if c == ch {
			g.waiting[tenant] = append(q[:i:i], q[i+1:]...)
			if len(g.waiting[tenant]) == 0 {
				delete(g.waiting, tenant)
				g.dropFromOrder(tenant)
			}
			g.mu.Unlock()
			return false
		}
	}
	g.mu.Unlock()
	g.release(1) // admitted just now: pass the slot on
	return false
}

// release frees a slot and admits the next waiting calls.
func (g *fairGate) release(capacity int) {
	g.mu.Lock()
	g.inFlight--
	g.mu.Unlock()
	g.pump(capacity)
}

// pump admits waiting calls while slots are free, one tenant at a time.
func (g *fairGate) pump(capacity int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.inFlight < max(capacity, 1) && len(g.order) > 0 {
		t := g.order[0]
		q := g.waiting[t]
		close(q[0])
		g.inFlight++
		if len(q) == 1 {
			delete(g.waiting, t)
			g.order = g.order[1:]
		} else {
			g.waiting[t] = q[1:]
			g.order = append(g.order[1:], t) // its turn again after the others
		}
	}
}

func (g *fairGate) dropFromOrder(tenant string) {
	for i, t := range g.order {
		if t == tenant {
			g.order = append(g.order[:i:i], g.order[i+1:]...)
			return
		}
	}
}

// gate is the fair gate of a shared queue.
func (d *Dispatcher) gate(queue string) *fairGate {
	d.mu.Lock()
	defer d.mu.Unlock()
	g := d.gates[queue]
	if g == nil {
		g = newFairGate()
		d.gates[queue] = g
	}
	return g
}

// capacity is the concurrency of the live, non-draining shared workers
// that serve a placement.
func (d *Dispatcher) capacity(labels map[string]string) int {
	n := 0
	for _, w := range d.Live() {
		if !w.Draining && len(w.Tenants) == 0 && workerproto.Matches(labels, w.Labels) {
			n += max(w.Concurrency, 1)
		}
	}
	return n
}
