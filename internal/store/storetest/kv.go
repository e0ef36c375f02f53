package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func testKV(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("PutGetDelete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.KVPut(ctx, "ten_a", "ns", "k", []byte("v1"), 0))
		require.NoError(t, s.KVPut(ctx, "ten_a", "other", "k", []byte("other"), 0))
		require.NoError(t, s.KVPut(ctx, "ten_a", "ns", "k", []byte("value2"), 0))
		v, err := s.KVGet(ctx, "ten_a", "ns", "k")
		require.NoError(t, err)
		require.Equal(t, []byte("value2"), v)
		v, err = s.KVGet(ctx, "ten_a", "other", "k")
		require.NoError(t, err)
		require.Equal(t, []byte("other"), v)
		_, err = s.KVGet(ctx, "ten_b", "ns", "k")
		requireCode(t, err, errs.ErrNotFound)

		require.NoError(t, s.KVPut(ctx, "ten_a", "ns", "empty", []byte{}, 0))
		v, err = s.KVGet(ctx, "ten_a", "ns", "empty")
		require.NoError(t, err)
		require.Empty(t, v)

		require.NoError(t, s.KVDelete(ctx, "ten_a", "ns", "k"))
		require.NoError(t, s.KVDelete(ctx, "ten_a", "ns", "k"))
		_, err = s.KVGet(ctx, "ten_a", "ns", "k")
		requireCode(t, err, errs.ErrNotFound)
		// Another tenant's delete does not touch ten_a.
		require.NoError(t, s.KVDelete(ctx, "ten_b", "other", "k"))
		_, err = s.KVGet(ctx, "ten_a", "other", "k")
		require.NoError(t, err)
	})

	t.Run("UsageAndQuota", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := store.KVEntrySize("ns", "k1", []byte("12345678")) // every k<n> entry with an 8-byte value
		limit := 3 * e
		require.NoError(t, s.KVPut(ctx, "ten_a", "ns", "k1", []byte("12345678"), limit))
		require.NoError(t, s.KVPut(ctx, "ten_a", "ns", "k2", []byte("12345678"), limit))
		full := make([]byte, limit-store.KVEntrySize("ns", "k1", nil)) // exactly the limit
		require.NoError(t, s.KVPut(ctx, "ten_b", "ns", "k1", full, limit))
		used, err := s.KVUsage(ctx, "ten_a")
		require.NoError(t, err)
		require.EqualValues(t, 2*e, used)

		err = s.KVPut(ctx, "ten_a", "ns", "k3", []byte("123456789"), limit) // one byte over
		requireCode(t, err, errs.ErrQuotaExceeded)
		_, err = s.KVGet(ctx, "ten_a", "ns", "k3")
		requireCode(t, err, errs.ErrNotFound)

		require.NoError(t, s.KVPut(ctx, "ten_a", "ns", "k3", []byte("12345678"), limit)) // exactly the limit

		// Replacing counts the new size instead of the old one.
		require.NoError(t, s.KVPut(ctx, "ten_a", "ns", "k1", []byte("1234"), limit)) // 3e-4
		err = s.KVPut(ctx, "ten_a", "ns", "k1", []byte("1234567890123"), limit)      // 3e+5
		requireCode(t, err, errs.ErrQuotaExceeded)
		v, err := s.KVGet(ctx, "ten_a", "ns", "k1")
		require.NoError(t, err)
		require.Equal(t, []byte("1234"), v)

		used, err = s.KVUsage(ctx, "ten_a")
		require.NoError(t, err)
		require.EqualValues(t, 3*e-4, used)
		require.NoError(t, s.KVDelete(ctx, "ten_a", "ns", "k2"))
		used, err = s.KVUsage(ctx, "ten_a")
		require.NoError(t, err)
		require.EqualValues(t, 2*e-4, used)
		used, err = s.KVUsage(ctx, "ten_c")
		require.NoError(t, err)
		require.Zero(t, used)

		// Namespaces count: many entries of empty values still fill the quota.
		small := store.KVEntrySize("a-long-namespace-name", "k", nil)
		n := 0
		for ; n < 100; n++ {
			if err := s.KVPut(ctx, "ten_d", "a-long-namespace-name", fmt.Sprint("k", n)[:1]+fmt.Sprint(n), nil, 10*small); err != nil {
				requireCode(t, err, errs.ErrQuotaExceeded)
				break
			}
		}
		require.Less(t, n, 10, "at most ten such entries fit (their keys are longer than k)")
	})

	t.Run("QuotaUnderConcurrentPuts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		limit := 10 * store.KVEntrySize("ns", "Aa", []byte("12345678")) // at most 10 fit
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := string(rune('A'+i%26)) + string(rune('a'+i/26))
				err := s.KVPut(ctx, "ten_a", "ns", key, []byte("12345678"), limit)
				if err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
					return
				}
				if !errors.Is(err, errs.ErrQuotaExceeded) {
					t.Errorf("unexpected error: %v", err)
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 10, ok)
		used, err := s.KVUsage(ctx, "ten_a")
		require.NoError(t, err)
		require.EqualValues(t, limit, used)
	})
}

func testBudget(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	win := base.Truncate(time.Hour)

	t.Run("ConcurrentReservationsNeverExceed", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		const workers, limit, each = 50, 250, 10
		var wg sync.WaitGroup
		var mu sync.Mutex
		granted, refused := 0, 0
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.ReserveBudget(ctx, store.ReserveParams{TenantID: "ten_a", Window: "hour", WindowStart: win,
					MaxTokens: limit, Tokens: each})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					granted++
				case errors.Is(err, errs.ErrQuotaExceeded):
					refused++
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}()
		}
		wg.Wait()
		require.Equal(t, limit/each, granted)
		require.Equal(t, workers-limit/each, refused)
		u, err := s.BudgetUsage(ctx, "ten_a", "hour", win)
		require.NoError(t, err)
		require.EqualValues(t, limit, u.UsedTokens)
		require.Equal(t, "hour", u.Window)
		require.Equal(t, win, u.WindowStart)
	})

	t.Run("RefusalDetailsAndSettle", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		p := store.ReserveParams{TenantID: "ten_a", Window: "day", WindowStart: win, MaxTokens: 100, MaxCostUSD: 1,
			Tokens: 80, CostUSD: 0.5}
		r, err := s.ReserveBudget(ctx, p)
		require.NoError(t, err)
		require.NotEmpty(t, r.ReservationID)
		require.Equal(t, "ten_a", r.TenantID)
		require.EqualValues(t, 80, r.Tokens)

		p.Tokens = 30
		_, err = s.ReserveBudget(ctx, p)
		requireCode(t, err, errs.ErrQuotaExceeded)
		var e *errs.Error
		require.ErrorAs(t, err, &e)
		require.Contains(t, e.Details, "limit")
		require.Contains(t, e.Details, "used")
		require.Equal(t, "day", e.Details["window"])
		require.EqualValues(t, 100, e.Details["limit"])
		require.EqualValues(t, 80, e.Details["used"])

		// Settling with less usage frees budget.
		require.NoError(t, s.SettleBudget(ctx, r, 50, 0.25))
		u, err := s.BudgetUsage(ctx, "ten_a", "day", win)
		require.NoError(t, err)
		require.EqualValues(t, 50, u.UsedTokens)
		require.InDelta(t, 0.25, u.UsedCostUSD, 1e-9)
		_, err = s.ReserveBudget(ctx, p)
		require.NoError(t, err)

		// Cost limit.
		p.Tokens, p.CostUSD = 1, 0.8
		_, err = s.ReserveBudget(ctx, p)
		requireCode(t, err, errs.ErrQuotaExceeded)

		// Another window, another tenant: untouched.
		u, err = s.BudgetUsage(ctx, "ten_a", "day", win.Add(24*time.Hour))
		require.NoError(t, err)
		require.Zero(t, u.UsedTokens)
		u, err = s.BudgetUsage(ctx, "ten_b", "day", win)
		require.NoError(t, err)
		require.Zero(t, u.UsedTokens)

		// Settling in the wrong tenant finds nothing.
		wrong := r
		wrong.TenantID = "ten_b"
		requireCode(t, s.SettleBudget(ctx, wrong, 1, 0), errs.ErrNotFound)
	})

	t.Run("NoLimits", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for range 3 {
			_, err := s.ReserveBudget(ctx, store.ReserveParams{TenantID: "ten_a", Window: "minute", WindowStart: win,
				Tokens: 1 << 40, CostUSD: 1000})
			require.NoError(t, err)
		}
		u, err := s.BudgetUsage(ctx, "ten_a", "minute", win)
		require.NoError(t, err)
		require.EqualValues(t, 3<<40, u.UsedTokens)
	})
}
