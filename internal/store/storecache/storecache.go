// Package storecache decorates a store.Store so that tenants, agents and
// API tokens are served from memory for a short time. Every authenticated
// request reads its token and tenant, and every run admission its agent;
// caching them removes database reads from the hot path. A revoked token
// is refused at once by the process that revoked it, and by others within
// the TTL. Writes through the decorator take
// effect at once in this process; writes by other processes (another
// service, a replica) within the TTL. A disabled tenant is therefore
// refused everywhere within the TTL.
//
// Replicas on a shared bus do better than the TTL: each write through the
// decorator reports an Invalidation to the function given to Notify (the
// orchestrator sends it to every replica as a bus signal), and a replica
// that receives one calls Drop, so the change is seen everywhere as soon as
// the signal arrives. The TTL stays as the safety net for a lost signal
// and for writes by processes not on the bus.
package storecache

import (
	"context"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/store"
)

// DefaultTTL is how long a tenant or agent is served from memory.
const DefaultTTL = time.Second

// Store is a store.Store whose tenant and agent reads are cached.
type Store struct {
	store.Store
	ttl time.Duration
	now func() time.Time

	mu     sync.Mutex
	gen    uint64 // bumped by every invalidation; a read fetched before it is not cached
	m      map[string]entry
	agents map[agentKey]agentEntry
	tokens map[string]tokenEntry // by secret hash
	runs   map[runKey]store.Run  // terminal runs only (runs.go)
	// webhooks are the tenants' default webhook endpoints (webhooks.go)
	webhooks map[string]webhooksEntry

	notify func(context.Context, Invalidation)
}

type tokenEntry struct {
	t       store.Token
	fetched time.Time
}

type entry struct {
	t       store.Tenant
	fetched time.Time
}

type agentKey struct{ tenantID, agentID string }

type agentEntry struct {
	a       store.Agent
	fetched time.Time
}

var _ store.Store = (*Store)(nil)

// Entities an Invalidation names.
const (
	EntityTenant = "tenant"
	EntityAgent  = "agent" // ID: the agent id
	EntityToken  = "token" // ID: the token id
)

// Invalidation names a cache entry that a write made stale.
type Invalidation struct {
	Entity   string // EntityTenant, EntityAgent, EntityToken, EntityRun or EntityWebhooks
	TenantID string
	ID       string // the agent, token or run id; "" for a tenant
}

// Notify sets the function that every write through the decorator calls
// after the write, in the writer's goroutine (nil: none). Set it before
// the store serves requests.
func (s *Store) Notify(f func(context.Context, Invalidation)) { s.notify = f }

func (s *Store) changed(ctx context.Context, inv Invalidation) {
	if s.notify != nil {
		s.notify(context.WithoutCancel(ctx), inv)
	}
}

// Drop forgets the entry inv names (a write by another replica), and any
// read under way is not cached.
func (s *Store) Drop(inv Invalidation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	switch inv.Entity {
	case EntityTenant:
		delete(s.m, inv.TenantID)
	case EntityAgent:
		delete(s.agents, agentKey{inv.TenantID, inv.ID})
	case EntityToken:
		s.dropToken(inv.ID)
	case EntityRun:
		delete(s.runs, runKey{inv.TenantID, inv.ID})
	case EntityWebhooks:
		delete(s.webhooks, inv.TenantID)
	}
}

// dropToken forgets a token by id; the caller holds s.mu.
func (s *Store) dropToken(tokenID string) {
	for h, e := range s.tokens {
		if e.t.TokenID == tokenID {
			delete(s.tokens, h)
		}
	}
}

// New wraps st; ttl <= 0 means DefaultTTL.
func New(st store.Store, ttl time.Duration) *Store {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Store{Store: st, ttl: ttl, now: time.Now, m: map[string]entry{}, agents: map[agentKey]agentEntry{},
		tokens: map[string]tokenEntry{}, runs: map[runKey]store.Run{}, webhooks: map[string]webhooksEntry{}}
}

// GetTenant returns the tenant from memory when it was read less than TTL
// ago, else from the store. Unknown tenants are not cached.
func (s *Store) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	if bypassed(ctx) {
		return s.Store.GetTenant(ctx, id)
	}
	now := s.now()
	s.mu.Lock()
	e, ok := s.m[id]
	gen := s.gen
	s.mu.Unlock()
	if ok && now.Sub(e.fetched) < s.ttl {
		return e.t, nil
	}
	t, err := s.Store.GetTenant(ctx, id)
	if err != nil {
		return t, err
	}
	s.mu.Lock()
	if s.gen == gen {
		s.m[t.TenantID] = entry{t: t, fetched: now}
	}
	s.mu.Unlock()
	return t, nil
}

// ListTenants reads through and refreshes the cache.
func (s *Store) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	s.mu.Lock()
	gen := s.gen
	s.mu.Unlock()
	ts, err := s.Store.ListTenants(ctx)
	if err != nil {
		return ts, err
	}
	now := s.now()
	s.mu.Lock()
	if s.gen == gen {
		for _, t := range ts {
			s.m[t.TenantID] = entry{t: t, fetched: now}
		}
	}
	s.mu.Unlock()
	return ts, nil
}

// CreateTenant writes through.
func (s *Store) CreateTenant(ctx context.Context, t store.Tenant) error {
	s.forget(t.TenantID)
	err := s.Store.CreateTenant(ctx, t)
	if err == nil {
		s.changed(ctx, Invalidation{Entity: EntityTenant, TenantID: t.TenantID})
	}
	return err
}

// UpdateTenant writes through; this process sees the change at once.
func (s *Store) UpdateTenant(ctx context.Context, t store.Tenant, ifUpdatedAt time.Time) error {
	err := s.Store.UpdateTenant(ctx, t, ifUpdatedAt)
	s.forget(t.TenantID)
	if err == nil {
		s.changed(ctx, Invalidation{Entity: EntityTenant, TenantID: t.TenantID})
	}
	return err
}

// GetAgent returns the agent from memory when it was read less than TTL
// ago, else from the store. Unknown agents are not cached.
func (s *Store) GetAgent(ctx context.Context, tenantID, agentID string) (store.Agent, error) {
	if bypassed(ctx) {
		return s.Store.GetAgent(ctx, tenantID, agentID)
	}
	k := agentKey{tenantID, agentID}
	now := s.now()
	s.mu.Lock()
	e, ok := s.agents[k]
	gen := s.gen
	s.mu.Unlock()
	if ok && now.Sub(e.fetched) < s.ttl {
		return e.a, nil
	}
	a, err := s.Store.GetAgent(ctx, tenantID, agentID)
	if err != nil {
		return a, err
	}
	s.mu.Lock()
	if len(s.agents) > maxAgents {
		clear(s.agents) // bounded memory; entries are cheap to refetch
	}
	if s.gen == gen {
		s.agents[k] = agentEntry{a: a, fetched: now}
	}
	s.mu.Unlock()
	return a, nil
}

// maxAgents bounds the agent and token caches.
const maxAgents = 10000

// TokenBySecretHash returns the token from memory when it was read less
// than TTL ago, else from the store. Unknown hashes are not cached.
func (s *Store) TokenBySecretHash(ctx context.Context, hash string) (store.Token, error) {
	if bypassed(ctx) {
		return s.Store.TokenBySecretHash(ctx, hash)
	}
	now := s.now()
	s.mu.Lock()
	e, ok := s.tokens[hash]
	gen := s.gen
	s.mu.Unlock()
	if ok && now.Sub(e.fetched) < s.ttl {
		return e.t, nil
	}
	t, err := s.Store.TokenBySecretHash(ctx, hash)
	if err != nil {
		return t, err
	}
	s.mu.Lock()
	if len(s.tokens) > maxAgents {
		clear(s.tokens)
	}
	if s.gen == gen {
		s.tokens[hash] = tokenEntry{t: t, fetched: now}
	}
	s.mu.Unlock()
	return t, nil
}

// RevokeToken writes through; this process refuses the token at once.
func (s *Store) RevokeToken(ctx context.Context, tenantID, tokenID string, at time.Time) error {
	err := s.Store.RevokeToken(ctx, tenantID, tokenID, at)
	s.mu.Lock()
	s.gen++
	s.dropToken(tokenID)
	s.mu.Unlock()
	if err == nil {
		s.changed(ctx, Invalidation{Entity: EntityToken, TenantID: tenantID, ID: tokenID})
	}
	return err
}

// PutAgent writes through; this process sees the change at once.
func (s *Store) PutAgent(ctx context.Context, a store.Agent) error {
	err := s.Store.PutAgent(ctx, a)
	s.mu.Lock()
	delete(s.agents, agentKey{a.TenantID, a.AgentID})
	s.gen++
	s.mu.Unlock()
	if err == nil {
		s.changed(ctx, Invalidation{Entity: EntityAgent, TenantID: a.TenantID, ID: a.AgentID})
	}
	return err
}

func (s *Store) forget(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.gen++
	s.mu.Unlock()
}

type bypassKey struct{}

// Bypass returns a context whose reads skip the cache: a read-modify-write
// (e.g. a tenant PATCH) must start from the stored record, not from a copy
// up to TTL old.
func Bypass(ctx context.Context) context.Context { return context.WithValue(ctx, bypassKey{}, true) }

func bypassed(ctx context.Context) bool { b, _ := ctx.Value(bypassKey{}).(bool); return b }
