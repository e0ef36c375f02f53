package events

import (
	"fmt"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/errs"
)

// StreamRetryAfter is the Retry-After of a refused stream: slots free up
// as soon as any stream ends.
const StreamRetryAfter = 2 * time.Second

// Gate bounds the concurrent event streams of one service process: at most
// Max in all (the node-wide cap, derived from the file-descriptor limit),
// and per tenant at most the tenant's max_concurrent_streams. It is checked
// before a stream does any expensive work (store reads, upstream calls),
// so a flood of refused attempts costs little.
type Gate struct {
	mu       sync.Mutex
	max      int
	total    int
	byTenant map[string]int
}

// NewGate returns a gate admitting at most max streams in all (max <= 0:
// no node-wide cap).
func NewGate(max int) *Gate { return &Gate{max: max, byTenant: map[string]int{}} }

// Max returns the node-wide cap (0: none).
func (g *Gate) Max() int { return g.max }

// Open returns the number of streams open now, in all and for tenantID.
func (g *Gate) Open(tenantID string) (total, tenant int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total, g.byTenant[tenantID]
}

// Acquire holds a stream slot for tenantID, whose cap is tenantMax (<= 0:
// no per-tenant cap). It returns the function that releases the slot (safe
// to call more than once; call it on every exit path, normally deferred),
// or an error: rate_limited (429) when the tenant is at its cap, overloaded
// (503) when the process is at the node-wide cap. Both carry Retry-After.
// The tenant's cap is checked first: a tenant at its own cap is told so
// even when the node is also full.
func (g *Gate) Acquire(tenantID string, tenantMax int) (release func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.byTenant[tenantID]; tenantMax > 0 && n >= tenantMax {
		return nil, (&errs.Error{Code: errs.RateLimited, RetryAfter: StreamRetryAfter,
			Message: fmt.Sprintf("tenant %s has %d event streams open, its quota quotas.runs.max_concurrent_streams", tenantID, n)}).
			WithDetails(map[string]any{"quota": "max_concurrent_streams", "limit": tenantMax, "open": n})
	}
	if g.max > 0 && g.total >= g.max {
		return nil, (&errs.Error{Code: errs.Overloaded, RetryAfter: StreamRetryAfter,
			Message: fmt.Sprintf("this node has %d event streams open, the most it serves at once; retry later", g.total)}).
			WithDetails(map[string]any{"limit": g.max})
	}
	g.total++
	g.byTenant[tenantID]++
	var once sync.Once
	return func() { once.Do(func() { g.release(tenantID) }) }, nil
}

func (g *Gate) release(tenantID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.byTenant[tenantID]--; g.byTenant[tenantID] <= 0 {
		delete(g.byTenant, tenantID)
	}
}
