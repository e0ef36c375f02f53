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

// VerifyChain checks that recs (a whole chain, in Seq order from 1) link up
// and that every hash recomputes.
func VerifyChain(t *testing.T, recs []store.AuditRecord) {
	t.Helper()
	prev := ""
	for i, r := range recs {
		require.EqualValues(t, i+1, r.Seq, "seq of record %d", i)
		require.Equal(t, prev, r.PrevHash, "prev_hash of seq %d", r.Seq)
		require.Equal(t, store.HashAudit(r), r.Hash, "hash of seq %d", r.Seq)
		prev = r.Hash
	}
}

func testAudit(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	rec := func(tenant string, i int) store.AuditRecord {
		return store.AuditRecord{
			Time:          base.Add(time.Duration(i) * time.Second).Add(789 * time.Nanosecond), // sub-µs is dropped
			TenantID:      tenant,
			PrincipalID:   "prn_alice",
			Action:        "run.create",
			Target:        fmt.Sprintf("run_%d", i),
			Outcome:       "allowed",
			PolicyContext: map[string]any{"rule": "default", "n": i, "ratio": 0.25, "nested": map[string]any{"ok": true}},
			Details:       map[string]any{"big": int64(1) << 60, "tags": []any{"a", "b"}, "html": "<&>"},
			CorrelationID: "cor_1",
		}
	}

	t.Run("ChainLinksAndVerifies", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var appended []store.AuditRecord
		for i := range 6 {
			tenant := "ten_a"
			if i%3 == 2 {
				tenant = "ten_b"
			}
			r := rec(tenant, i)
			if i%2 == 1 {
				r.PrincipalID, r.OnBehalfOf = "svc_backend", "prn_alice" // a service acting for alice
			}
			r, err := s.AppendAudit(ctx, r)
			require.NoError(t, err)
			require.NotEmpty(t, r.AuditID)
			require.Equal(t, store.HashAudit(r), r.Hash)
			appended = append(appended, r)
		}
		require.Empty(t, appended[0].PrevHash)
		all, err := s.ListAudit(ctx, store.ListAuditParams{})
		require.NoError(t, err)
		require.Len(t, all, 6)
		VerifyChain(t, all)
		for i := range all {
			require.Equal(t, appended[i].Hash, all[i].Hash)
			require.Equal(t, appended[i].Time, all[i].Time)
			require.Equal(t, appended[i].AuditID, all[i].AuditID)
			require.Equal(t, appended[i].TenantID, all[i].TenantID)
			require.Equal(t, appended[i].PrincipalID, all[i].PrincipalID)
			require.Equal(t, appended[i].OnBehalfOf, all[i].OnBehalfOf, "on_behalf_of of seq %d", all[i].Seq)
		}

		onlyB, err := s.ListAudit(ctx, store.ListAuditParams{TenantID: "ten_b"})
		require.NoError(t, err)
		require.Len(t, onlyB, 2)
		require.EqualValues(t, 3, onlyB[0].Seq)
		require.EqualValues(t, 6, onlyB[1].Seq)

		page, err := s.ListAudit(ctx, store.ListAuditParams{AfterSeq: 2, Limit: 3})
		require.NoError(t, err)
		require.Len(t, page, 3)
		require.EqualValues(t, 3, page[0].Seq)
		require.EqualValues(t, 5, page[2].Seq)
	})

	t.Run("BatchesChainInOrderAllOrNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		_, err := s.AppendAudit(ctx, rec("ten_a", 0))
		require.NoError(t, err)
		batch, err := s.AppendAudits(ctx, []store.AuditRecord{rec("ten_b", 1), rec("ten_a", 2), rec("ten_b", 3)})
		require.NoError(t, err)
		require.Len(t, batch, 3)
		for i, r := range batch {
			require.EqualValues(t, i+2, r.Seq)
			require.Equal(t, fmt.Sprintf("run_%d", i+1), r.Target)
		}
		// A batch with an invalid record appends nothing.
		_, err = s.AppendAudits(ctx, []store.AuditRecord{rec("ten_a", 6), {TenantID: "ten_a", Details: map[string]any{"f": func() {}}}})
		requireCode(t, err, errs.ErrInvalid)
		empty, err := s.AppendAudits(ctx, nil)
		require.NoError(t, err)
		require.Empty(t, empty)

		all, err := s.ListAudit(ctx, store.ListAuditParams{})
		require.NoError(t, err)
		require.Len(t, all, 4)
		VerifyChain(t, all)
		require.Equal(t, batch[2].Hash, all[3].Hash)
		onlyB, err := s.ListAudit(ctx, store.ListAuditParams{TenantID: "ten_b"})
		require.NoError(t, err)
		require.Len(t, onlyB, 2)
	})

	t.Run("ConcurrentAppendsStayChained", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var wg sync.WaitGroup
		errc := make(chan error, 20)
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.AppendAudit(ctx, rec("ten_a", i))
				errc <- err
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			require.NoError(t, err)
		}
		all, err := s.ListAudit(ctx, store.ListAuditParams{Limit: 100})
		require.NoError(t, err)
		require.Len(t, all, 20)
		VerifyChain(t, all)
	})

	t.Run("TamperingIsDetected", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for i := range 3 {
			_, err := s.AppendAudit(ctx, rec("ten_a", i))
			require.NoError(t, err)
		}
		all, err := s.ListAudit(ctx, store.ListAuditParams{})
		require.NoError(t, err)
		all[1].Outcome = "denied"
		require.NotEqual(t, all[1].Hash, store.HashAudit(all[1]))
	})
}
