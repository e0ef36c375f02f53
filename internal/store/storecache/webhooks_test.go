package storecache

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// A tenant's webhook endpoints are read once per TTL; writes through the
// decorator are seen at once and reported to Notify; Drop (another
// replica's write) forgets them; tenants never see each other's.
func TestWebhookEndpointsAreCached(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "a.db"))
	require.NoError(t, err)
	defer db.Close()
	c := New(db, time.Hour)
	var got []Invalidation
	c.Notify(func(_ context.Context, inv Invalidation) { got = append(got, inv) })
	now := time.Now().UTC()
	ep := func(tenant, id, url string) store.WebhookEndpoint {
		return store.WebhookEndpoint{TenantID: tenant, EndpointID: id, URL: url, Events: "terminal", CreatedAt: now, UpdatedAt: now}
	}

	require.NoError(t, c.PutWebhookEndpoint(ctx, ep("tnt_a", "wh_1", "http://127.0.0.1:9/a")))
	require.Equal(t, []Invalidation{{Entity: EntityWebhooks, TenantID: "tnt_a"}}, got)
	eps, err := c.ListWebhookEndpoints(ctx, "tnt_a")
	require.NoError(t, err)
	require.Len(t, eps, 1)
	none, err := c.ListWebhookEndpoints(ctx, "tnt_b")
	require.NoError(t, err)
	require.Empty(t, none, "another tenant's endpoints")

	// Cached: a write behind the decorator's back is not seen.
	require.NoError(t, db.PutWebhookEndpoint(ctx, ep("tnt_a", "wh_2", "http://127.0.0.1:9/b")))
	eps, err = c.ListWebhookEndpoints(ctx, "tnt_a")
	require.NoError(t, err)
	require.Len(t, eps, 1)
	eps[0].URL = "changed by a caller"
	again, err := c.ListWebhookEndpoints(ctx, "tnt_a")
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:9/a", again[0].URL, "callers get copies")

	// Another replica's write arrives as Drop: the next read sees it.
	c.Drop(Invalidation{Entity: EntityWebhooks, TenantID: "tnt_a"})
	eps, err = c.ListWebhookEndpoints(ctx, "tnt_a")
	require.NoError(t, err)
	require.Len(t, eps, 2)

	// A delete through the decorator is seen at once.
	require.NoError(t, c.DeleteWebhookEndpoint(ctx, "tnt_a", "wh_1"))
	eps, err = c.ListWebhookEndpoints(ctx, "tnt_a")
	require.NoError(t, err)
	require.Len(t, eps, 1)
	require.Equal(t, "wh_2", eps[0].EndpointID)
	require.Len(t, got, 2)

	// Bypass reads the store.
	require.NoError(t, db.DeleteWebhookEndpoint(ctx, "tnt_a", "wh_2"))
	eps, err = c.ListWebhookEndpoints(Bypass(ctx), "tnt_a")
	require.NoError(t, err)
	require.Empty(t, eps)
}
