package storetest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func memEntry(tenant, ns, key, text string, vec []float32) store.MemoryEntry {
	v, _ := json.Marshal(map[string]any{"text": text, "kind": "note"})
	return store.MemoryEntry{TenantID: tenant, Namespace: ns, Key: key, Value: v, Text: text,
		Embedding: vec, EmbeddingModel: "builtin/embed-small"}
}

func hitKeys(hits []store.MemoryHit) []string {
	keys := make([]string, len(hits))
	for i, h := range hits {
		keys[i] = h.Key
	}
	return keys
}

func testMemory(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("PutGetDelete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := memEntry("ten_a", "ns", "k", "first text", []float32{1, 0, 0.5})
		require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: e}))
		e.Text, e.Value = "second text", []byte(`{"text":"second text"}`)
		require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: e}))
		got, err := s.MemoryGet(ctx, "ten_a", "ns", "k")
		require.NoError(t, err)
		require.Equal(t, "second text", got.Text)
		require.JSONEq(t, `{"text":"second text"}`, string(got.Value))
		require.Equal(t, []float32{1, 0, 0.5}, got.Embedding)
		require.Equal(t, "builtin/embed-small", got.EmbeddingModel)
		require.False(t, got.UpdatedAt.IsZero())

		_, err = s.MemoryGet(ctx, "ten_b", "ns", "k")
		requireCode(t, err, errs.ErrNotFound)
		_, err = s.MemoryGet(ctx, "ten_a", "other", "k")
		requireCode(t, err, errs.ErrNotFound)
		require.NoError(t, s.MemoryDelete(ctx, "ten_b", "ns", "k")) // another tenant's delete touches nothing
		_, err = s.MemoryGet(ctx, "ten_a", "ns", "k")
		require.NoError(t, err)
		require.NoError(t, s.MemoryDelete(ctx, "ten_a", "ns", "k"))
		require.NoError(t, s.MemoryDelete(ctx, "ten_a", "ns", "k"))
		_, err = s.MemoryGet(ctx, "ten_a", "ns", "k")
		requireCode(t, err, errs.ErrNotFound)
		// The deleted entry's index is gone too.
		hits, err := s.MemoryKeywordSearch(ctx, store.MemorySearchParams{TenantID: "ten_a", Namespace: "ns", Terms: []string{"second"}})
		require.NoError(t, err)
		require.Empty(t, hits)
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := memEntry("ten_a", "ns", "", "x", nil)
		requireCode(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: e}), errs.ErrInvalid)
		e = memEntry("ten_a", "ns", "k", "x", nil)
		e.Value = []byte("{")
		requireCode(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: e}), errs.ErrInvalid)
	})

	t.Run("Keyword", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, e := range []store.MemoryEntry{
			memEntry("ten_a", "ns", "run", "The runner was running along the river every morning", nil),
			memEntry("ten_a", "ns", "cake", "Chocolate cake recipe with dark cocoa", nil),
			memEntry("ten_a", "ns", "mixed", "A cake for the runner", nil),
			memEntry("ten_a", "other", "cake2", "Chocolate cake in another namespace", nil),
			memEntry("ten_b", "ns", "cake3", "Chocolate cake of another tenant", nil),
		} {
			require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: e}))
		}
		search := func(terms []string, filter map[string]json.RawMessage, limit int) []string {
			t.Helper()
			hits, err := s.MemoryKeywordSearch(ctx, store.MemorySearchParams{TenantID: "ten_a", Namespace: "ns",
				Terms: terms, Filter: filter, Limit: limit})
			require.NoError(t, err)
			for i := 1; i < len(hits); i++ {
				require.GreaterOrEqual(t, hits[i-1].Score, hits[i].Score)
			}
			return hitKeys(hits)
		}
		// Stemming: "runs" finds running/runner's stem; only ten_a/ns.
		require.Equal(t, "run", search([]string{"runs", "river"}, nil, 0)[0])
		require.ElementsMatch(t, []string{"cake", "mixed"}, search([]string{"chocolate", "cake"}, nil, 0))
		require.Equal(t, []string{"cake"}, search([]string{"chocolate", "cocoa"}, nil, 1))
		require.Empty(t, search([]string{"nowhere"}, nil, 0))
		require.Empty(t, search(nil, nil, 0))
		require.Empty(t, search([]string{"cake"}, map[string]json.RawMessage{"kind": json.RawMessage(`"recipe"`)}, 0))
		require.ElementsMatch(t, []string{"cake", "mixed"}, search([]string{"cake"}, map[string]json.RawMessage{"kind": json.RawMessage(` "note" `)}, 0))
		hits, err := s.MemoryKeywordSearch(ctx, store.MemorySearchParams{TenantID: "ten_a", Namespace: "ns", Terms: []string{"cocoa"}})
		require.NoError(t, err)
		require.Len(t, hits, 1)
		require.JSONEq(t, `{"text":"Chocolate cake recipe with dark cocoa","kind":"note"}`, string(hits[0].Value))
	})

	t.Run("Vector", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: memEntry("ten_a", "ns", "x", "x", []float32{1, 0})}))
		require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: memEntry("ten_a", "ns", "diag", "d", []float32{1, 1})}))
		require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: memEntry("ten_a", "ns", "y", "y", []float32{0, 1})}))
		require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: memEntry("ten_a", "ns", "none", "n", nil)}))
		other := memEntry("ten_a", "ns", "othermodel", "o", []float32{1, 0})
		other.EmbeddingModel = "openai/x"
		require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: other}))
		require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: memEntry("ten_b", "ns", "tb", "t", []float32{1, 0})}))

		hits, err := s.MemoryVectorSearch(ctx, store.MemorySearchParams{TenantID: "ten_a", Namespace: "ns",
			Vector: []float32{0.9, 0.1}, Model: "builtin/embed-small"})
		require.NoError(t, err)
		require.Equal(t, []string{"x", "diag", "y"}, hitKeys(hits))
		require.InDelta(t, 0.9939, hits[0].Score, 1e-3)
		hits, err = s.MemoryVectorSearch(ctx, store.MemorySearchParams{TenantID: "ten_a", Namespace: "ns",
			Vector: []float32{0, 1}, Model: "builtin/embed-small", Limit: 1})
		require.NoError(t, err)
		require.Equal(t, []string{"y"}, hitKeys(hits))
	})

	t.Run("QuotaSharedWithKV", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := memEntry("ten_a", "ns", "k", "some text", []float32{1, 2, 3})
		require.NoError(t, s.KVPut(ctx, "ten_a", "ns", "kv", []byte("12345678"), 0))
		kvSize := store.KVEntrySize("ns", "kv", []byte("12345678"))
		limit := kvSize + e.Size()
		require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: e, MaxBytes: limit}))
		used, err := s.KVUsage(ctx, "ten_a")
		require.NoError(t, err)
		require.Equal(t, limit, used)
		// Replacing with the same size fits; one byte more does not, and
		// leaves the entry as it was.
		require.NoError(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: e, MaxBytes: limit}))
		bigger := e
		bigger.Text = e.Text + "!"
		requireCode(t, s.MemoryPut(ctx, store.MemoryPutParams{Entry: bigger, MaxBytes: limit}), errs.ErrQuotaExceeded)
		got, err := s.MemoryGet(ctx, "ten_a", "ns", "k")
		require.NoError(t, err)
		require.Equal(t, e.Text, got.Text)
		// A KV put sees the memory's bytes.
		requireCode(t, s.KVPut(ctx, "ten_a", "ns", "kv2", []byte("x"), limit), errs.ErrQuotaExceeded)
		require.NoError(t, s.MemoryDelete(ctx, "ten_a", "ns", "k"))
		used, err = s.KVUsage(ctx, "ten_a")
		require.NoError(t, err)
		require.Equal(t, kvSize, used)
	})
}
