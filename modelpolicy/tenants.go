package modelpolicy

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// DefaultTenantTTL is how long a tenant (status, entitlements, quotas,
// policy id) read from the store is served from memory. A change made in
// the store, such as disabling a tenant, takes effect within this time.
const DefaultTenantTTL = time.Second

// TenantGetter reads one tenant; store.Store, *TenantCache and
// internal/auth's TenantLookup all have this shape.
type TenantGetter interface {
	GetTenant(ctx context.Context, tenantID string) (store.Tenant, error)
}

// TenantCache serves tenants from memory for a short TTL so a governed
// call does not read the store for its tenant (and, when the Authenticator
// is given the same cache, neither does authentication). Unknown tenants
// are cached too (as not_found); store errors are not. A tenant disabled
// or changed in the store is seen within the TTL. Safe for concurrent use.
// The returned Tenant's slices and maps are shared: callers must not
// modify them.
type TenantCache struct {
	src TenantGetter
	ttl time.Duration
	now func() time.Time

	mu sync.RWMutex
	m  map[string]tenantEntry
}

type tenantEntry struct {
	t       store.Tenant
	missing bool
	at      time.Time
}

var _ TenantGetter = (*TenantCache)(nil)

// NewTenantCache returns a cache over src with ttl (<= 0: DefaultTenantTTL).
func NewTenantCache(src TenantGetter, ttl time.Duration) *TenantCache {
	if ttl <= 0 {
		ttl = DefaultTenantTTL
	}
	return &TenantCache{src: src, ttl: ttl, now: time.Now, m: map[string]tenantEntry{}}
}

// GetTenant returns the tenant from memory when read less than the TTL
// ago, else from the store.
func (c *TenantCache) GetTenant(ctx context.Context, tenantID string) (store.Tenant, error) {
	now := c.now()
	c.mu.RLock()
	e, ok := c.m[tenantID]
	c.mu.RUnlock()
	if ok && now.Sub(e.at) < c.ttl {
		if e.missing {
			return store.Tenant{}, errs.E(errs.NotFound, "tenant %q not found", tenantID)
		}
		return e.t, nil
	}
	t, err := c.src.GetTenant(ctx, tenantID)
	switch {
	case err == nil:
		e = tenantEntry{t: t, at: now}
	case errors.Is(err, errs.ErrNotFound) || errs.CodeOf(err) == errs.NotFound:
		e = tenantEntry{missing: true, at: now}
	default:
		return store.Tenant{}, err
	}
	c.mu.Lock()
	if len(c.m) > 100000 { // bound memory against callers naming random tenants
		clear(c.m)
	}
	c.m[tenantID] = e
	c.mu.Unlock()
	return t, err
}

// Invalidate drops a tenant from the cache (the next call reads the store).
func (c *TenantCache) Invalidate(tenantID string) {
	c.mu.Lock()
	delete(c.m, tenantID)
	c.mu.Unlock()
}
