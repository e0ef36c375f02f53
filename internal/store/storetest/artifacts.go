package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func newArtifact(tenantID, runID, id string, size int64, created time.Time) store.Artifact {
	return store.Artifact{ArtifactID: id, TenantID: tenantID, RunID: runID, StepID: "stp_1", ToolCallID: "tcall_1",
		Name: "body-" + id + ".html", ContentType: "text/html; charset=utf-8", Size: size,
		SHA256: fmt.Sprintf("%064x", size), CreatedAt: created}
}

func testArtifacts(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("CreateGetList", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		exp := at(time.Hour)
		a1 := newArtifact("tnt_a", "run_1", "art_2", 10, at(time.Second))
		a1.ExpiresAt = &exp
		a2 := newArtifact("tnt_a", "run_1", "art_1", 20, at(2*time.Second))
		a3 := newArtifact("tnt_a", "run_2", "art_3", 30, at(time.Second))
		for _, a := range []store.Artifact{a1, a2, a3} {
			require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: a}))
		}
		got, err := s.GetArtifact(ctx, "tnt_a", "art_2")
		require.NoError(t, err)
		require.Equal(t, a1, got)
		got, err = s.GetArtifact(ctx, "tnt_a", "art_1")
		require.NoError(t, err)
		require.Nil(t, got.ExpiresAt)

		list, err := s.ListRunArtifacts(ctx, "tnt_a", "run_1")
		require.NoError(t, err)
		require.Equal(t, []store.Artifact{a1, a2}, list, "oldest first")
		list, err = s.ListRunArtifacts(ctx, "tnt_a", "run_none")
		require.NoError(t, err)
		require.NotNil(t, list)
		require.Empty(t, list)

		n, err := s.ArtifactBytes(ctx, "tnt_a")
		require.NoError(t, err)
		require.EqualValues(t, 60, n)
	})

	t.Run("TenantScoped", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: newArtifact("tnt_a", "run_1", "art_1", 5, at(0))}))
		_, err := s.GetArtifact(ctx, "tnt_b", "art_1")
		requireCode(t, err, errs.ErrNotFound)
		list, err := s.ListRunArtifacts(ctx, "tnt_b", "run_1")
		require.NoError(t, err)
		require.Empty(t, list)
		requireCode(t, s.DeleteArtifact(ctx, "tnt_b", "art_1"), errs.ErrNotFound)
		n, err := s.ArtifactBytes(ctx, "tnt_b")
		require.NoError(t, err)
		require.Zero(t, n)
		// The same id in another tenant is another artifact.
		require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: newArtifact("tnt_b", "run_1", "art_1", 7, at(0))}))
		got, err := s.GetArtifact(ctx, "tnt_a", "art_1")
		require.NoError(t, err)
		require.EqualValues(t, 5, got.Size)
	})

	t.Run("DuplicateAndInvalid", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := newArtifact("tnt_a", "run_1", "art_1", 5, at(0))
		require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: a}))
		requireCode(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: a}), errs.ErrConflict)
		bad := a
		bad.ArtifactID, bad.SHA256 = "art_2", ""
		err := s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: bad})
		require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))
		require.ErrorContains(t, err, "sha256")
		_, err = s.GetArtifact(ctx, "tnt_a", "art_2")
		requireCode(t, err, errs.ErrNotFound)
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: newArtifact("tnt_a", "run_1", "art_1", 5, at(0))}))
		require.NoError(t, s.DeleteArtifact(ctx, "tnt_a", "art_1"))
		requireCode(t, s.DeleteArtifact(ctx, "tnt_a", "art_1"), errs.ErrNotFound)
		_, err := s.GetArtifact(ctx, "tnt_a", "art_1")
		requireCode(t, err, errs.ErrNotFound)
		n, err := s.ArtifactBytes(ctx, "tnt_a")
		require.NoError(t, err)
		require.Zero(t, n)
	})

	t.Run("Quota", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: newArtifact("tnt_a", "run_1", "art_1", 60, at(0)), MaxBytes: 100}))
		require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: newArtifact("tnt_a", "run_1", "art_2", 40, at(0)), MaxBytes: 100}),
			"exactly the quota fits")
		err := s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: newArtifact("tnt_a", "run_1", "art_3", 1, at(0)), MaxBytes: 100})
		requireCode(t, err, errs.ErrQuotaExceeded)
		var e *errs.Error
		require.ErrorAs(t, err, &e)
		require.EqualValues(t, 100, e.Details["limit"])
		require.EqualValues(t, 100, e.Details["used"])
		_, err = s.GetArtifact(ctx, "tnt_a", "art_3")
		requireCode(t, err, errs.ErrNotFound)
		// Another tenant's usage is its own.
		require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: newArtifact("tnt_b", "run_1", "art_3", 100, at(0)), MaxBytes: 100}))
		// 0 is unlimited.
		require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: newArtifact("tnt_a", "run_1", "art_4", 1000, at(0))}))
	})

	t.Run("QuotaUnderConcurrency", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var wg sync.WaitGroup
		errc := make(chan error, 10)
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errc <- s.CreateArtifact(ctx, store.CreateArtifactParams{
					Artifact: newArtifact("tnt_a", "run_1", fmt.Sprintf("art_%d", i), 30, at(0)), MaxBytes: 100})
			}()
		}
		wg.Wait()
		close(errc)
		ok := 0
		for err := range errc {
			if err == nil {
				ok++
				continue
			}
			requireCode(t, err, errs.ErrQuotaExceeded)
		}
		require.Equal(t, 3, ok, "exactly three 30-byte artifacts fit in 100 bytes")
		n, err := s.ArtifactBytes(ctx, "tnt_a")
		require.NoError(t, err)
		require.EqualValues(t, 90, n)
	})

	t.Run("Expired", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for i, d := range []time.Duration{3 * time.Minute, time.Minute, 2 * time.Minute, time.Hour} {
			a := newArtifact(fmt.Sprintf("tnt_%d", i%2), "run_1", fmt.Sprintf("art_%d", i), 1, at(0))
			exp := at(d)
			a.ExpiresAt = &exp
			require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: a}))
		}
		require.NoError(t, s.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: newArtifact("tnt_0", "run_1", "art_never", 1, at(0))}))
		list, err := s.ExpiredArtifacts(ctx, at(3*time.Minute), 10)
		require.NoError(t, err)
		var got []string
		for _, a := range list {
			got = append(got, a.TenantID+"/"+a.ArtifactID)
		}
		require.Equal(t, []string{"tnt_1/art_1", "tnt_0/art_2", "tnt_0/art_0"}, got, "soonest first, at or before now, across tenants")
		list, err = s.ExpiredArtifacts(ctx, at(3*time.Minute), 2)
		require.NoError(t, err)
		require.Len(t, list, 2)
		list, err = s.ExpiredArtifacts(ctx, at(0), 10)
		require.NoError(t, err)
		require.Empty(t, list)
	})
}
