package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func testTenants(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("CreateGetList", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		b, a := newTenant("ten_b"), newTenant("ten_a")
		require.NoError(t, s.CreateTenant(ctx, b))
		require.NoError(t, s.CreateTenant(ctx, a))
		got, err := s.GetTenant(ctx, "ten_a")
		require.NoError(t, err)
		require.Equal(t, a, got)
		list, err := s.ListTenants(ctx)
		require.NoError(t, err)
		require.Equal(t, []store.Tenant{a, b}, list)
	})

	// A store call whose caller has gone is canceled, not a (retryable)
	// timeout: the one mapping of errs.FromContext, in every adapter.
	t.Run("CanceledContextIsCanceled", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.GetTenant(canceled, "ten_x")
		require.Equal(t, errs.Canceled, errs.CodeOf(err), "err: %v", err)
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("DuplicateIsConflict", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.CreateTenant(ctx, newTenant("ten_a")))
		other := newTenant("ten_a")
		other.Name = "other"
		requireCode(t, s.CreateTenant(ctx, other), errs.ErrConflict)
		got, err := s.GetTenant(ctx, "ten_a")
		require.NoError(t, err)
		require.Equal(t, "Tenant ten_a", got.Name)
	})

	t.Run("UnknownIsNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		_, err := s.GetTenant(ctx, "ten_missing")
		requireCode(t, err, errs.ErrNotFound)
		requireCode(t, s.UpdateTenant(ctx, newTenant("ten_missing"), time.Time{}), errs.ErrNotFound)
		list, err := s.ListTenants(ctx)
		require.NoError(t, err)
		require.Empty(t, list)
	})

	t.Run("UpdateKeepsCreatedAt", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		orig := newTenant("ten_a")
		require.NoError(t, s.CreateTenant(ctx, orig))
		upd := orig
		upd.Name, upd.Status, upd.PlanTier = "renamed", store.TenantDisabled, "free"
		upd.CreatedAt = at(time.Hour) // ignored
		upd.UpdatedAt = at(2 * time.Hour)
		upd.Quotas.Runs.MaxConcurrentRuns = 9
		upd.Entitlements.ToolIDsAllowed = nil
		upd.Metadata = store.Metadata{}
		require.NoError(t, s.UpdateTenant(ctx, upd, time.Time{}))
		got, err := s.GetTenant(ctx, "ten_a")
		require.NoError(t, err)
		want := upd
		want.CreatedAt = orig.CreatedAt
		require.Equal(t, want, got)
	})
}

func testTokens(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	tok := func(tenant, id, hash string) store.Token {
		return store.Token{TokenID: id, TenantID: tenant, PrincipalID: "prn_" + id, SecretHash: hash,
			Scopes: []string{"runs:write", "runs:read"}, Roles: []string{"tenant_admin"},
			CreatedAt: at(0), ExpiresAt: ptr(at(24 * time.Hour))}
	}

	t.Run("CreateFindList", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a1, a2, b1 := tok("ten_a", "tok_1", "h1"), tok("ten_a", "tok_2", "h2"), tok("ten_b", "tok_3", "h3")
		a2.ExpiresAt = nil
		for _, x := range []store.Token{a1, a2, b1} {
			require.NoError(t, s.CreateToken(ctx, x))
		}
		got, err := s.TokenBySecretHash(ctx, "h3")
		require.NoError(t, err)
		require.Equal(t, b1, got)
		got, err = s.TokenBySecretHash(ctx, "h2")
		require.NoError(t, err)
		require.Equal(t, a2, got)
		_, err = s.TokenBySecretHash(ctx, "nope")
		requireCode(t, err, errs.ErrNotFound)

		list, err := s.ListTokens(ctx, "ten_a")
		require.NoError(t, err)
		require.Len(t, list, 2)
		for i, want := range []store.Token{a1, a2} {
			want.SecretHash = ""
			require.Equal(t, want, list[i])
		}
		list, err = s.ListTokens(ctx, "ten_c")
		require.NoError(t, err)
		require.Empty(t, list)
	})

	t.Run("DuplicateIDOrHash", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.CreateToken(ctx, tok("ten_a", "tok_1", "h1")))
		requireCode(t, s.CreateToken(ctx, tok("ten_a", "tok_1", "h2")), errs.ErrConflict)
		requireCode(t, s.CreateToken(ctx, tok("ten_b", "tok_2", "h1")), errs.ErrConflict)
		_, err := s.TokenBySecretHash(ctx, "h2")
		requireCode(t, err, errs.ErrNotFound)
	})

	t.Run("Revoke", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.CreateToken(ctx, tok("ten_a", "tok_1", "h1")))
		requireCode(t, s.RevokeToken(ctx, "ten_b", "tok_1", at(time.Hour)), errs.ErrNotFound)
		got, err := s.TokenBySecretHash(ctx, "h1")
		require.NoError(t, err)
		require.Nil(t, got.RevokedAt)
		require.NoError(t, s.RevokeToken(ctx, "ten_a", "tok_1", at(time.Hour)))
		got, err = s.TokenBySecretHash(ctx, "h1")
		require.NoError(t, err)
		require.NotNil(t, got.RevokedAt)
		require.Equal(t, at(time.Hour), *got.RevokedAt)
		requireCode(t, s.RevokeToken(ctx, "ten_a", "tok_missing", at(time.Hour)), errs.ErrNotFound)
	})
}

func testAgents(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("PutGetList", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a2, a1, b1 := newAgent("ten_a", "agt_2"), newAgent("ten_a", "agt_1"), newAgent("ten_b", "agt_1")
		b1.Name = "B's agent"
		for _, a := range []store.Agent{a2, a1, b1} {
			require.NoError(t, s.PutAgent(ctx, a))
		}
		got, err := s.GetAgent(ctx, "ten_a", "agt_1")
		require.NoError(t, err)
		require.Equal(t, a1, got)
		got, err = s.GetAgent(ctx, "ten_b", "agt_1")
		require.NoError(t, err)
		require.Equal(t, b1, got)
		list, err := s.ListAgents(ctx, "ten_a")
		require.NoError(t, err)
		require.Equal(t, []store.Agent{a1, a2}, list)
	})

	t.Run("WrongTenantNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.PutAgent(ctx, newAgent("ten_a", "agt_1")))
		_, err := s.GetAgent(ctx, "ten_b", "agt_1")
		requireCode(t, err, errs.ErrNotFound)
		list, err := s.ListAgents(ctx, "ten_b")
		require.NoError(t, err)
		require.Empty(t, list)
	})

	t.Run("PutReplaces", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := newAgent("ten_a", "agt_1")
		require.NoError(t, s.PutAgent(ctx, a))
		a.Version, a.Instructions, a.Tools, a.Status = 2, "new", []string{}, store.AgentDeprecated
		a.UpdatedAt = at(time.Hour)
		require.NoError(t, s.PutAgent(ctx, a))
		got, err := s.GetAgent(ctx, "ten_a", "agt_1")
		require.NoError(t, err)
		require.Equal(t, a, got)
		list, err := s.ListAgents(ctx, "ten_a")
		require.NoError(t, err)
		require.Len(t, list, 1)
	})
}
