package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func newMCPServer(tenantID, name string) store.MCPServer {
	return store.MCPServer{
		TenantID:  tenantID,
		Name:      name,
		Transport: store.MCPTransportHTTP,
		URL:       "https://mcp.example.com/" + name,
		Headers:   map[string]string{"X-Api-Key": "k-" + name},
		Secret:    "bearer-secret-" + name,
		Args:      []string{},
		Env:       map[string]string{},
		TimeoutMs: 5000,
		CreatedAt: at(0),
		UpdatedAt: at(time.Second),
	}
}

func testMCPServers(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("PutGetList", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		z, a, b := newMCPServer("ten_a", "zeta"), newMCPServer("ten_a", "alpha"), newMCPServer("ten_b", "alpha")
		b.Transport, b.URL, b.Headers, b.Secret = store.MCPTransportStdio, "", map[string]string{}, ""
		b.Command, b.Args, b.Env = "node", []string{"server.js", "stdio"}, map[string]string{"MEMORY_FILE_PATH": "/tmp/m.json"}
		for _, d := range []store.MCPServer{z, a, b} {
			require.NoError(t, s.PutMCPServer(ctx, d))
		}
		got, err := s.GetMCPServer(ctx, "ten_a", "alpha")
		require.NoError(t, err)
		require.Equal(t, a, got)
		got, err = s.GetMCPServer(ctx, "ten_b", "alpha")
		require.NoError(t, err)
		require.Equal(t, b, got)
		list, err := s.ListMCPServers(ctx, "ten_a")
		require.NoError(t, err)
		require.Equal(t, []store.MCPServer{a, z}, list)
	})

	t.Run("NilMapsReadBackEmpty", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		d := newMCPServer("ten_a", "bare")
		d.Headers, d.Args, d.Env = nil, nil, nil
		require.NoError(t, s.PutMCPServer(ctx, d))
		got, err := s.GetMCPServer(ctx, "ten_a", "bare")
		require.NoError(t, err)
		require.Equal(t, map[string]string{}, got.Headers)
		require.Equal(t, []string{}, got.Args)
		require.Equal(t, map[string]string{}, got.Env)
	})

	t.Run("ReplaceKeepsCreatedAt", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		d := newMCPServer("ten_a", "alpha")
		require.NoError(t, s.PutMCPServer(ctx, d))
		d2 := d
		d2.URL, d2.Secret, d2.CreatedAt, d2.UpdatedAt = "https://other.example.com/mcp", "rotated", at(time.Hour), at(time.Hour)
		require.NoError(t, s.PutMCPServer(ctx, d2))
		got, err := s.GetMCPServer(ctx, "ten_a", "alpha")
		require.NoError(t, err)
		require.Equal(t, "https://other.example.com/mcp", got.URL)
		require.Equal(t, "rotated", got.Secret)
		require.Equal(t, at(0), got.CreatedAt)
		require.Equal(t, at(time.Hour), got.UpdatedAt)
	})

	t.Run("WrongTenantNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.PutMCPServer(ctx, newMCPServer("ten_a", "alpha")))
		_, err := s.GetMCPServer(ctx, "ten_b", "alpha")
		requireCode(t, err, errs.ErrNotFound)
		list, err := s.ListMCPServers(ctx, "ten_b")
		require.NoError(t, err)
		require.Empty(t, list)
		requireCode(t, s.DeleteMCPServer(ctx, "ten_b", "alpha"), errs.ErrNotFound)
		_, err = s.GetMCPServer(ctx, "ten_a", "alpha")
		require.NoError(t, err, "a wrong-tenant delete removes nothing")
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.PutMCPServer(ctx, newMCPServer("ten_a", "alpha")))
		require.NoError(t, s.DeleteMCPServer(ctx, "ten_a", "alpha"))
		_, err := s.GetMCPServer(ctx, "ten_a", "alpha")
		requireCode(t, err, errs.ErrNotFound)
		requireCode(t, s.DeleteMCPServer(ctx, "ten_a", "alpha"), errs.ErrNotFound)
	})
}
