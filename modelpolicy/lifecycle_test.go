package modelpolicy

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

// ownGoroutines returns the stacks of the live goroutines that code of
// this package started (the settle loop, the record writer's flusher and
// its batch writers, budget settlements).
func ownGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var own []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "created by github.com/nexixai/agentos/modelpolicy.") {
			own = append(own, g)
		}
	}
	return own
}

// requireNoOwnGoroutines fails unless ownGoroutines is empty or empties
// soon: a goroutine that closed its done channel may still be returning.
func requireNoOwnGoroutines(t *testing.T, msg string) {
	t.Helper()
	var left []string
	for range 500 {
		if left = ownGoroutines(); len(left) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Empty(t, left, msg)
}

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestStartStopLeavesNoGoroutine: New starts nothing, Start starts the
// settle loop and the flusher (once, however often it is called), and
// Stop waits for them and for the budget settlements it causes.
//
// Not parallel on purpose: it looks at every goroutine of the process,
// and the package's parallel tests only run once the sequential ones are
// done, so none of their servers is live here.
func TestStartStopLeavesNoGoroutine(t *testing.T) {
	db := openDB(t)
	requireNoOwnGoroutines(t, "goroutines left by an earlier test")
	s, err := New(Config{Store: db, Authenticate: testAuth, Registry: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), SettleInterval: time.Millisecond})
	require.NoError(t, err)
	require.Empty(t, ownGoroutines(), "New started a goroutine")

	require.NoError(t, s.Start())
	require.NoError(t, s.Start(), "Start is idempotent")
	require.Len(t, ownGoroutines(), 2, "the settle loop and the flusher, once")

	// A call with a budget leases an allocation, which the settle loop
	// and Stop settle in goroutines of their own.
	ts := httptest.NewServer(s.Handler())
	b := &bundle{t: t, db: db, srv: s, url: ts.URL}
	b.addTenant(tenant("tnt_life", func(t *store.Tenant) {
		t.Quotas.Models.TokenBudget = store.TokenBudget{Window: "day", MaxTokens: 1000000}
	}))
	for range 3 {
		r := b.do("POST", "/v1/models:invoke", "tnt_life", chatBody("tnt_life", "tier:fast", []map[string]any{user("x")}, nil))
		require.Equal(t, 200, r.status, string(r.raw))
	}
	ts.Close()

	require.NoError(t, s.Stop())
	require.True(t, closed(s.bgDone), "Stop returned before the settle loop ended")
	require.True(t, closed(s.writer.done), "Stop returned before the flusher ended")
	requireNoOwnGoroutines(t, "goroutines left after Stop")

	require.Error(t, s.Start(), "a stopped server does not start again")
	require.NoError(t, s.Stop(), "Stop is idempotent")
	recs, err := db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_life"})
	require.NoError(t, err)
	require.Len(t, recs, 3, "Stop wrote the queued ledger")
	u, err := db.BudgetUsage(context.Background(), "tnt_life", "day", windowStart(time.Now(), "day"))
	require.NoError(t, err)
	var total int64
	for _, r := range recs {
		total += r.InputTokens + r.OutputTokens
	}
	require.Equal(t, total, u.UsedTokens, "Stop settled the budget to the ledger")
}

// TestUnstartedServerWritesSynchronously: a server that was never
// started still serves, and its records are written before the call
// returns rather than queued for a flusher that does not run.
func TestUnstartedServerWritesSynchronously(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	s, err := New(Config{Store: db, Authenticate: testAuth, Registry: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	b := &bundle{t: t, db: db, srv: s, url: ts.URL}
	b.addTenant(tenant("tnt_a"))
	r := b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user("x")}, nil))
	require.Equal(t, 200, r.status, string(r.raw))
	recs, err := db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	aud, err := db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, aud, 1)
	require.NoError(t, s.Stop())
}
