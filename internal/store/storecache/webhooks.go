package storecache

import (
	"context"
	"slices"
	"time"

	"github.com/nexixai/agentos/internal/store"
)

// A tenant's default webhook endpoints are read on every run admission
// (each run is delivered to them), which made the listing query ~7% of the
// orchestrator's CPU when admitting runs. They are kept per tenant for the
// TTL, like tenants and agents: a write through the decorator drops the
// tenant's list here and is reported to Notify (EntityWebhooks), so
// replicas drop theirs too; the TTL bounds what a lost signal costs.

// EntityWebhooks names a tenant's webhook endpoints in an Invalidation.
const EntityWebhooks = "webhooks"

type webhooksEntry struct {
	eps     []store.WebhookEndpoint
	fetched time.Time
}

// ListWebhookEndpoints returns the tenant's endpoints from memory when
// they were read less than TTL ago, else from the store.
func (s *Store) ListWebhookEndpoints(ctx context.Context, tenantID string) ([]store.WebhookEndpoint, error) {
	if bypassed(ctx) {
		return s.Store.ListWebhookEndpoints(ctx, tenantID)
	}
	now := s.now()
	s.mu.Lock()
	e, ok := s.webhooks[tenantID]
	gen := s.gen
	s.mu.Unlock()
	if ok && now.Sub(e.fetched) < s.ttl {
		return slices.Clone(e.eps), nil // callers may append to or sort theirs
	}
	eps, err := s.Store.ListWebhookEndpoints(ctx, tenantID)
	if err != nil {
		return eps, err
	}
	s.mu.Lock()
	if len(s.webhooks) > maxAgents {
		clear(s.webhooks)
	}
	if s.gen == gen {
		s.webhooks[tenantID] = webhooksEntry{eps: slices.Clone(eps), fetched: now}
	}
	s.mu.Unlock()
	return eps, nil
}

// PutWebhookEndpoint writes through; this process sees it at once.
func (s *Store) PutWebhookEndpoint(ctx context.Context, e store.WebhookEndpoint) error {
	err := s.Store.PutWebhookEndpoint(ctx, e)
	s.dropWebhooks(ctx, e.TenantID, err == nil)
	return err
}

// DeleteWebhookEndpoint writes through; this process sees it at once.
func (s *Store) DeleteWebhookEndpoint(ctx context.Context, tenantID, endpointID string) error {
	err := s.Store.DeleteWebhookEndpoint(ctx, tenantID, endpointID)
	s.dropWebhooks(ctx, tenantID, err == nil)
	return err
}

func (s *Store) dropWebhooks(ctx context.Context, tenantID string, notify bool) {
	s.mu.Lock()
	delete(s.webhooks, tenantID)
	s.gen++
	s.mu.Unlock()
	if notify {
		s.changed(ctx, Invalidation{Entity: EntityWebhooks, TenantID: tenantID})
	}
}
