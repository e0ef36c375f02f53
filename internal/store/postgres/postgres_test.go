package postgres_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres"
	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/internal/store/storetest"
)

// open opens a store on a fresh schema, closed at cleanup.
func open(t *testing.T) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), pgtest.URL(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func TestConformance(t *testing.T) {
	t.Parallel()
	pgtest.BaseURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// Processes starting together migrate once: every Open succeeds and the
// schema has each migration recorded exactly once.
func TestConcurrentMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	const n = 6
	dbs := make([]*postgres.DB, n)
	errsOut := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errsOut[i] = postgres.Open(ctx, url)
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errsOut[i])
		t.Cleanup(func() { require.NoError(t, dbs[i].Close()) })
	}
	v, err := dbs[0].SchemaVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, 9, v)
	var rows, heads int
	require.NoError(t, dbs[0].Pool().QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&rows))
	require.Equal(t, 7, rows)
	require.NoError(t, dbs[0].Pool().QueryRow(ctx, `SELECT count(*) FROM audit_head`).Scan(&heads))
	require.Equal(t, 1, heads)

	// Every handle works on the one schema.
	require.NoError(t, dbs[1].CreateTenant(ctx, store.Tenant{TenantID: "ten_a", Name: "A"}))
	got, err := dbs[n-1].GetTenant(ctx, "ten_a")
	require.NoError(t, err)
	require.Equal(t, "A", got.Name)

	// Reopening finds nothing to do.
	again, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	defer again.Close()
	require.NoError(t, again.Pool().QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&rows))
	require.Equal(t, 7, rows)
}

// Two handles on one schema are two replicas: appends through both stay one
// gapless sequence per run and one audit chain.
func TestTwoReplicasShareState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	a, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	defer a.Close()
	b, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	defer b.Close()

	res, err := a.CreateRun(ctx, store.CreateRunParams{Run: store.Run{TenantID: "ten_a", AgentID: "agt_1"}})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: res.Run.RunID,
				Events: []store.Event{{Type: "test.event"}, {Type: "test.event"}}})
			if err != nil {
				t.Errorf("append: %v", err)
			}
			if _, err := s.AppendAudit(ctx, store.AuditRecord{TenantID: "ten_a", Action: "x",
				Details: map[string]any{"i": i, "f": 1e21}}); err != nil {
				t.Errorf("audit: %v", err)
			}
		}()
	}
	wg.Wait()
	evs, err := b.ListEvents(ctx, store.ListEventsParams{TenantID: "ten_a", RunID: res.Run.RunID})
	require.NoError(t, err)
	require.Len(t, evs, 21)
	for i, e := range evs {
		require.EqualValues(t, i+1, e.Sequence)
	}
	recs, err := a.ListAudit(ctx, store.ListAuditParams{})
	require.NoError(t, err)
	storetest.VerifyChain(t, recs)
	require.Len(t, recs, 10)
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, u := range []string{"", "sqlite:///tmp/x.db", "postgres://u:secret@[::1/db", "postgres://x/db?pool_max_conns=abc"} {
		_, err := postgres.Open(ctx, u)
		require.Truef(t, errors.Is(err, errs.ErrInvalid), "%q: got %v", u, err)
		var e *errs.Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, "store_url", e.Details["field"])
		require.NotContains(t, err.Error(), "secret")
	}
	require.True(t, postgres.IsURL("postgres://h/db"))
	require.True(t, postgres.IsURL("postgresql://h/db"))
	require.False(t, postgres.IsURL("sqlite:///x.db"))
}

// A schema that does not exist is reported, not created behind the user's back.
func TestOpenMissingSchema(t *testing.T) {
	t.Parallel()
	base := pgtest.BaseURL(t)
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	_, err := postgres.Open(context.Background(), base+sep+"search_path=no_such_schema_x")
	require.Truef(t, errors.Is(err, errs.ErrInvalid), "got %v", err)
}

// Values PostgreSQL refuses (NUL bytes in text) are invalid input, and
// change nothing.
func TestInvalidTextIsInvalidRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := open(t)
	err := db.CreateTenant(ctx, store.Tenant{TenantID: "ten_a", Name: "bad\x00name"})
	require.Truef(t, errors.Is(err, errs.ErrInvalid), "got %v", err)
	_, err = db.GetTenant(ctx, "ten_a")
	require.True(t, errors.Is(err, errs.ErrNotFound))
}

// An unreachable server is dependency_unavailable (retryable), not internal.
func TestUnreachableServer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, "postgres://agentos@127.0.0.1:1/db?sslmode=disable&connect_timeout=5")
	require.Error(t, err)
	code := errs.CodeOf(err)
	require.Containsf(t, []errs.Code{errs.DependencyUnavailable, errs.Timeout}, code, "got %v", err)
}
