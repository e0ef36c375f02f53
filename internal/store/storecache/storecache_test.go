package storecache

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/internal/store/storetest"
)

// The decorator is a store.Store: it passes the whole conformance suite.
func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "a.db"))
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		return New(db, time.Minute)
	})
}

func TestTTLAndWriteThrough(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "a.db"))
	require.NoError(t, err)
	defer db.Close()
	now := time.Unix(1000, 0)
	c := New(db, time.Second)
	c.now = func() time.Time { return now }
	require.NoError(t, c.CreateTenant(ctx, store.Tenant{TenantID: "tnt_a", Name: "A", Status: store.TenantActive}))
	got, err := c.GetTenant(ctx, "tnt_a")
	require.NoError(t, err)
	require.Equal(t, store.TenantActive, got.Status)

	// Another process disables the tenant: seen after the TTL.
	other := got
	other.Status = store.TenantDisabled
	require.NoError(t, db.UpdateTenant(ctx, other, time.Time{}))
	got, _ = c.GetTenant(ctx, "tnt_a")
	require.Equal(t, store.TenantActive, got.Status, "served from memory within the TTL")
	now = now.Add(time.Second)
	got, _ = c.GetTenant(ctx, "tnt_a")
	require.Equal(t, store.TenantDisabled, got.Status)

	// Writes through the cache are seen at once.
	got.Status = store.TenantActive
	require.NoError(t, c.UpdateTenant(ctx, got, time.Time{}))
	got, _ = c.GetTenant(ctx, "tnt_a")
	require.Equal(t, store.TenantActive, got.Status)

	_, err = c.GetTenant(ctx, "tnt_missing")
	require.ErrorIs(t, err, errs.ErrNotFound)

	agent := store.Agent{AgentID: "agt_x", TenantID: "tnt_a", Name: "x", Version: 1, Status: store.AgentActive, Tools: []string{}}
	require.NoError(t, c.PutAgent(ctx, agent))
	a, err := c.GetAgent(ctx, "tnt_a", "agt_x")
	require.NoError(t, err)
	require.Equal(t, 1, a.Version)
	agent.Version = 2
	require.NoError(t, c.PutAgent(ctx, agent))
	a, _ = c.GetAgent(ctx, "tnt_a", "agt_x")
	require.Equal(t, 2, a.Version, "a write through the cache is seen at once")
	_, err = c.GetAgent(ctx, "tnt_b", "agt_x")
	require.ErrorIs(t, err, errs.ErrNotFound, "agents stay tenant-scoped")

	require.NoError(t, c.CreateToken(ctx, store.Token{TokenID: "tok_1", TenantID: "tnt_a", PrincipalID: "usr_a",
		SecretHash: "h1", Scopes: []string{}, Roles: []string{}, CreatedAt: now}))
	tok, err := c.TokenBySecretHash(ctx, "h1")
	require.NoError(t, err)
	require.Nil(t, tok.RevokedAt)
	require.NoError(t, c.RevokeToken(ctx, "tnt_a", "tok_1", now))
	tok, err = c.TokenBySecretHash(ctx, "h1")
	require.NoError(t, err)
	require.NotNil(t, tok.RevokedAt, "a revocation through the cache is seen at once")
}

// A read that started before an invalidation does not put its stale result
// back into the cache.
func TestStaleReadIsNotCached(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "a.db"))
	require.NoError(t, err)
	defer db.Close()
	slow := &slowTenants{Store: db, release: make(chan struct{}), started: make(chan struct{})}
	c := New(slow, time.Minute)
	require.NoError(t, db.CreateTenant(ctx, store.Tenant{TenantID: "tnt_a", Name: "A", Status: store.TenantActive}))
	got := make(chan store.Tenant)
	go func() { tn, _ := c.GetTenant(ctx, "tnt_a"); got <- tn }()
	<-slow.started // the read has fetched the active tenant and is paused
	disabled := store.Tenant{TenantID: "tnt_a", Name: "A", Status: store.TenantDisabled}
	require.NoError(t, c.UpdateTenant(ctx, disabled, time.Time{}))
	close(slow.release)
	require.Equal(t, store.TenantActive, (<-got).Status)
	tn, err := c.GetTenant(ctx, "tnt_a")
	require.NoError(t, err)
	require.Equal(t, store.TenantDisabled, tn.Status, "the stale read was not cached")

	fresh, err := c.GetTenant(Bypass(ctx), "tnt_a")
	require.NoError(t, err)
	require.Equal(t, store.TenantDisabled, fresh.Status)
}

// slowTenants pauses the first GetTenant after reading, until released.
type slowTenants struct {
	store.Store
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (s *slowTenants) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	t, err := s.Store.GetTenant(ctx, id)
	s.once.Do(func() {
		close(s.started)
		<-s.release
	})
	return t, err
}

// Two caches over one store (two replicas): a write through one reports
// an Invalidation, and Drop on the other makes it read the change at once
// although its TTL is an hour.
func TestNotifyAndDrop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "a.db"))
	require.NoError(t, err)
	defer db.Close()
	a, b := New(db, time.Hour), New(db, time.Hour)
	var got []Invalidation
	a.Notify(func(_ context.Context, inv Invalidation) { got = append(got, inv) })
	require.NoError(t, a.CreateTenant(ctx, store.Tenant{TenantID: "tnt_a", Name: "A", Status: store.TenantActive}))
	ten, err := b.GetTenant(ctx, "tnt_a")
	require.NoError(t, err)
	ag := store.Agent{AgentID: "agt_1", TenantID: "tnt_a", Name: "one", Version: 1, Status: store.AgentActive,
		ModelRef: "tier:fast", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	require.NoError(t, a.PutAgent(ctx, ag))
	_, err = b.GetAgent(ctx, "tnt_a", "agt_1")
	require.NoError(t, err)
	tok := store.Token{TokenID: "tok_1", TenantID: "tnt_a", PrincipalID: "usr_1", SecretHash: "h1", CreatedAt: time.Now()}
	require.NoError(t, db.CreateToken(ctx, tok))
	_, err = b.TokenBySecretHash(ctx, "h1")
	require.NoError(t, err)

	ten.Status = store.TenantDisabled
	require.NoError(t, a.UpdateTenant(ctx, ten, time.Time{}))
	ag.Status = store.AgentInactive
	require.NoError(t, a.PutAgent(ctx, ag))
	require.NoError(t, a.RevokeToken(ctx, "tnt_a", "tok_1", time.Now()))
	require.Equal(t, []Invalidation{
		{Entity: EntityTenant, TenantID: "tnt_a"},
		{Entity: EntityAgent, TenantID: "tnt_a", ID: "agt_1"},
		{Entity: EntityTenant, TenantID: "tnt_a"},
		{Entity: EntityAgent, TenantID: "tnt_a", ID: "agt_1"},
		{Entity: EntityToken, TenantID: "tnt_a", ID: "tok_1"},
	}, got)

	// b still serves its copies (the TTL is an hour) until it drops them.
	t1, _ := b.GetTenant(ctx, "tnt_a")
	require.Equal(t, store.TenantActive, t1.Status)
	for _, inv := range got {
		b.Drop(inv)
	}
	t1, _ = b.GetTenant(ctx, "tnt_a")
	require.Equal(t, store.TenantDisabled, t1.Status)
	a1, _ := b.GetAgent(ctx, "tnt_a", "agt_1")
	require.Equal(t, store.AgentInactive, a1.Status)
	k, _ := b.TokenBySecretHash(ctx, "h1")
	require.NotNil(t, k.RevokedAt)
}
