package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is one replica: its base URL, whether it is in the rotation,
// and how many requests it is answering now (streams included).
type upstream struct {
	pool        string // its pool's name, for logs and metrics
	base        *url.URL
	healthy     atomic.Bool
	outstanding atomic.Int64
}

func newUpstream(pool, raw string) *upstream {
	u, _ := url.Parse(strings.TrimSuffix(raw, "/")) // validated by Upstreams.Validate
	return &upstream{pool: pool, base: u}
}

// pool is the replicas of one service (shared, or dedicated to tenants).
type pool struct {
	name    string // "orchestrator", "model-policy", "federation", or "<dedicated>/<service>"
	service string
	ups     []*upstream
	next    atomic.Uint64
}

func newPool(name, service string, urls []string) *pool {
	p := &pool{name: name, service: service}
	for _, raw := range urls {
		p.ups = append(p.ups, newUpstream(name, raw))
	}
	return p
}

// pick returns the healthy upstream with the fewest outstanding requests,
// starting the scan at a round-robin position so that ties rotate; nil when
// none is healthy. Replicas in skip (already tried by this request) are
// passed over. Least-outstanding rather than plain round-robin because SSE
// streams stay open for minutes: a replica holding many of them should
// get fewer new ones.
func (p *pool) pick(skip []*upstream) *upstream {
	n := len(p.ups)
	if n == 0 {
		return nil
	}
	start := int(p.next.Add(1) % uint64(n))
	var best *upstream
	for i := range n {
		u := p.ups[(start+i)%n]
		if !u.healthy.Load() || contains(skip, u) {
			continue
		}
		if best == nil || u.outstanding.Load() < best.outstanding.Load() {
			best = u
		}
	}
	return best
}

func contains(list []*upstream, u *upstream) bool {
	for _, x := range list {
		if x == u {
			return true
		}
	}
	return false
}

func (p *pool) healthyCount() int {
	n := 0
	for _, u := range p.ups {
		if u.healthy.Load() {
			n++
		}
	}
	return n
}

// readyPath is the readiness endpoint of every service (CONTRACT §1).
const readyPath = "/readyz"

// checker runs the active health checks of every upstream.
type checker struct {
	client   *http.Client
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger
	ups      []*upstream
	onChange func(u *upstream, healthy bool)
}

// checkAll probes every upstream at once and waits for the answers.
func (c *checker) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, u := range c.ups {
		wg.Go(func() { c.check(ctx, u) })
	}
	wg.Wait()
}

// check probes one upstream's readiness: 200 within the timeout puts it in
// the rotation, anything else takes it out.
func (c *checker) check(parent context.Context, u *upstream) {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	ok, reason := false, ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.base.String()+readyPath, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = c.client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			ok = resp.StatusCode == http.StatusOK
			reason = fmt.Sprintf("%s answered HTTP %d", readyPath, resp.StatusCode)
		}
	}
	switch {
	case parent.Err() != nil:
		return // shutting down: the outcome means nothing
	case errors.Is(err, context.DeadlineExceeded):
		reason = fmt.Sprintf("%s did not answer within %s", readyPath, c.timeout)
	case err != nil:
		reason = err.Error()
	}
	c.record(u, ok, reason)
}

// record applies a health outcome (from a probe, or a refused connection
// seen while proxying) and logs a change of state.
func (c *checker) record(u *upstream, ok bool, reason string) {
	if u.healthy.Swap(ok) == ok {
		return // no change
	}
	if ok {
		c.log.Info("upstream back in rotation", "pool", u.pool, "upstream", u.base.String())
	} else {
		c.log.Warn("upstream out of rotation", "pool", u.pool, "upstream", u.base.String(), "reason", reason)
	}
	if c.onChange != nil {
		c.onChange(u, ok)
	}
}

// run probes every interval until ctx ends.
func (c *checker) run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.checkAll(ctx)
		}
	}
}
