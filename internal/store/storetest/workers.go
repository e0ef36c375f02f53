package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// newWorker is a valid worker; key varies the (unique) public key.
func newWorker(id string, key byte) store.Worker {
	pub := make([]byte, 56)
	pub[0] = 'U'
	for i := 1; i < len(pub); i++ {
		pub[i] = 'A' + key%26
	}
	return store.Worker{WorkerID: id, Labels: map[string]string{"gpu": "a100", "zone": "eu"}, PublicKey: string(pub),
		Tenants: []string{}, Status: store.WorkerActive, CreatedAt: at(0), UpdatedAt: at(0)}
}

func testWorkers(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("CreateGetList", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		b, a := newWorker("w-b", 1), newWorker("w-a", 2)
		a.Tenants = []string{"ten_a"}
		a.Labels = nil
		require.NoError(t, s.CreateWorker(ctx, b))
		require.NoError(t, s.CreateWorker(ctx, a))
		got, err := s.GetWorker(ctx, "w-a")
		require.NoError(t, err)
		a.Labels = map[string]string{}
		require.Equal(t, a, got, "nil labels read back empty")
		list, err := s.ListWorkers(ctx)
		require.NoError(t, err)
		require.Equal(t, []store.Worker{a, b}, list)
	})

	t.Run("Conflicts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.CreateWorker(ctx, newWorker("w-1", 1)))
		err := s.CreateWorker(ctx, newWorker("w-1", 2))
		requireCode(t, err, errs.ErrConflict)
		err = s.CreateWorker(ctx, newWorker("w-2", 1))
		requireCode(t, err, errs.ErrConflict)
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		w := newWorker("W bad", 1)
		requireCode(t, s.CreateWorker(ctx, w), errs.ErrInvalid)
		w = newWorker("w-ok", 1)
		w.PublicKey = "nope"
		requireCode(t, s.CreateWorker(ctx, w), errs.ErrInvalid)
		_, err := s.GetWorker(ctx, "w-ok")
		requireCode(t, err, errs.ErrNotFound)
	})

	t.Run("Revoke", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.CreateWorker(ctx, newWorker("w-1", 1)))
		w, err := s.RevokeWorker(ctx, "w-1", at(time.Minute))
		require.NoError(t, err)
		require.Equal(t, store.WorkerRevoked, w.Status)
		require.Equal(t, at(time.Minute), *w.RevokedAt)
		require.Equal(t, at(time.Minute), w.UpdatedAt)
		again, err := s.RevokeWorker(ctx, "w-1", at(time.Hour))
		require.NoError(t, err)
		require.Equal(t, w, again, "revoking twice keeps the first revocation")
		_, err = s.RevokeWorker(ctx, "w-none", at(0))
		requireCode(t, err, errs.ErrNotFound)
		_, err = s.GetWorker(ctx, "w-none")
		requireCode(t, err, errs.ErrNotFound)
	})
}
