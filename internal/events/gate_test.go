package events

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

func TestGateTenantAndNodeCaps(t *testing.T) {
	t.Parallel()
	g := NewGate(5)
	var rel []func()
	for i := 0; i < 3; i++ {
		r, err := g.Acquire("tnt_a", 3)
		require.NoError(t, err)
		rel = append(rel, r)
	}
	_, err := g.Acquire("tnt_a", 3)
	e := errs.As(err)
	require.Equal(t, errs.RateLimited, e.Code, "the tenant is at its cap")
	require.Equal(t, StreamRetryAfter, e.RetryAfter)
	require.Equal(t, 3, e.Details["limit"])

	for i := 0; i < 2; i++ {
		r, err := g.Acquire("tnt_b", 0)
		require.NoError(t, err)
		rel = append(rel, r)
	}
	_, err = g.Acquire("tnt_c", 10)
	require.Equal(t, errs.Overloaded, errs.CodeOf(err), "the node is at its cap")
	_, err = g.Acquire("tnt_a", 3)
	require.Equal(t, errs.RateLimited, errs.CodeOf(err), "a tenant at its own cap is told so first")

	for _, r := range rel {
		r()
		r() // idempotent
	}
	total, a := g.Open("tnt_a")
	require.Zero(t, total)
	require.Zero(t, a)
	r, err := g.Acquire("tnt_c", 10)
	require.NoError(t, err, "released slots are reusable")
	r()
}

func TestGateFloodKeepsTheCount(t *testing.T) {
	t.Parallel()
	g := NewGate(1000)
	const tenantMax = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted, refused := 0, 0
	hold := make(chan struct{})
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := g.Acquire("tnt_a", tenantMax)
			mu.Lock()
			if err != nil {
				refused++
				mu.Unlock()
				return
			}
			admitted++
			mu.Unlock()
			<-hold
			r()
		}()
	}
	for {
		mu.Lock()
		n := admitted + refused
		mu.Unlock()
		if n == 500 {
			break
		}
	}
	close(hold)
	wg.Wait()
	require.Equal(t, tenantMax, admitted)
	require.Equal(t, 500-tenantMax, refused)
	total, _ := g.Open("tnt_a")
	require.Zero(t, total)
}
