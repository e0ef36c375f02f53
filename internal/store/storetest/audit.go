package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// VerifyChain checks that recs (a whole chain, in Seq order from 1, as
// read from a store) link up, that every hash is the SHA-256 of the
// record's stored canonical bytes, and that the record as read encodes to
// exactly those bytes.
func VerifyChain(t *testing.T, recs []store.AuditRecord) {
	t.Helper()
	prev := ""
	for i, r := range recs {
		require.EqualValues(t, i+1, r.Seq, "seq of record %d", i)
		require.Equal(t, prev, r.PrevHash, "prev_hash of seq %d", r.Seq)
		require.NotNil(t, r.Stored, "stored bytes of seq %d", r.Seq)
		require.NotEmpty(t, r.Stored.Canonical, "canonical bytes of seq %d", r.Seq)
		require.Equal(t, store.HashCanonical(r.Stored.Canonical), r.Hash, "hash of seq %d", r.Seq)
		again, err := store.CanonicalAudit(r)
		require.NoError(t, err)
		require.Equal(t, string(r.Stored.Canonical), string(again), "seq %d re-encodes to its stored bytes", r.Seq)
		prev = r.Hash
	}
}

// usage is a struct in Details: encoding/json writes its fields in Go
// order, which a re-encoded map would not reproduce (the defect that broke
// chains after a model call).
type usage struct {
	Output int     `json:"output_tokens"`
	Input  int     `json:"input_tokens"`
	Cost   float64 `json:"cost_usd"`
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
			Details: map[string]any{"big": int64(1) << 60, "tags": []any{"a", "b"}, "html": "<&>\u2028é",
				"usage": usage{Output: i, Input: 3, Cost: 0.1}, "empty": map[string]any{}, "none": nil},
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
			require.Equal(t, store.HashCanonical(r.Stored.Canonical), r.Hash)
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
			// Written once, read back byte for byte.
			require.Equal(t, string(appended[i].Stored.Canonical), string(all[i].Stored.Canonical))
			require.Equal(t, map[string]any{"output_tokens": json.Number(fmt.Sprint(i)), "input_tokens": json.Number("3"),
				"cost_usd": json.Number("0.1")}, all[i].Details["usage"])
			// I-JSON numbers are doubles: 2^60 is kept as the double it is,
			// in ECMAScript spelling (RFC 8785 §3.2.2.3).
			require.Equal(t, json.Number("1152921504606847000"), all[i].Details["big"])
			require.Equal(t, "<&>\u2028é", all[i].Details["html"])
		}
		require.Contains(t, string(all[0].Stored.Canonical), `"usage":{"cost_usd":0.1,"input_tokens":3,"output_tokens":0}`)
		require.Contains(t, string(all[0].Stored.Canonical), `"html":"<&>`+"\u2028"+`é"`, "no HTML or U+2028 escapes")

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
		again, err := store.CanonicalAudit(all[1])
		require.NoError(t, err)
		require.NotEqual(t, string(all[1].Stored.Canonical), string(again))
	})
}
