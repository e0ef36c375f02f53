// Package blobtest is the blob port's conformance suite: every adapter's
// test calls Run with a factory that makes a fresh, empty store, so the
// adapters behave alike (keys, hashes, atomic writes, errors).
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/blob"
	"github.com/nexixai/agentos/internal/errs"
)

// Run exercises a blob.Store. newStore returns a fresh, empty store for
// one subtest; subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	t.Helper()
	ctx := context.Background()

	t.Run("PutGetStat", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		body := []byte("hello, artifact\n")
		info, err := s.Put(ctx, blob.PutParams{Key: "tenant/tnt_a/artifacts/art_1", Body: bytes.NewReader(body), ContentType: "text/plain; charset=utf-8"})
		require.NoError(t, err)
		require.Equal(t, "tenant/tnt_a/artifacts/art_1", info.Key)
		require.EqualValues(t, len(body), info.Size)
		require.Equal(t, sum(body), info.SHA256)
		require.Equal(t, "text/plain; charset=utf-8", info.ContentType)
		require.False(t, info.ModTime.IsZero())

		st, err := s.Stat(ctx, info.Key)
		require.NoError(t, err)
		require.Equal(t, info.Size, st.Size)
		require.Equal(t, info.SHA256, st.SHA256)
		require.Equal(t, info.ContentType, st.ContentType)

		rc, gi, err := s.Get(ctx, info.Key)
		require.NoError(t, err)
		got, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		require.Equal(t, body, got)
		require.Equal(t, info.SHA256, gi.SHA256)
		require.Equal(t, info.Size, gi.Size)
	})

	t.Run("EmptyBlobAndDefaultContentType", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		info, err := s.Put(ctx, blob.PutParams{Key: "empty", Body: strings.NewReader("")})
		require.NoError(t, err)
		require.Zero(t, info.Size)
		require.Equal(t, sum(nil), info.SHA256)
		require.Equal(t, blob.DefaultContentType, info.ContentType)
		rc, _, err := s.Get(ctx, "empty")
		require.NoError(t, err)
		got, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		require.Empty(t, got)
	})

	t.Run("LargeBlobStreams", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		// 6 MiB + 1: more than one S3 multipart part and many copy
		// buffers, written from a reader that never holds it all.
		const n = 6<<20 + 1
		info, err := s.Put(ctx, blob.PutParams{Key: "big/one", Body: io.LimitReader(newPattern(7), n)})
		require.NoError(t, err)
		require.EqualValues(t, n, info.Size)
		h := sha256.New()
		_, err = io.Copy(h, io.LimitReader(newPattern(7), n))
		require.NoError(t, err)
		require.Equal(t, hex.EncodeToString(h.Sum(nil)), info.SHA256)

		rc, _, err := s.Get(ctx, "big/one")
		require.NoError(t, err)
		h2 := sha256.New()
		got, err := io.Copy(h2, rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		require.EqualValues(t, n, got)
		require.Equal(t, info.SHA256, hex.EncodeToString(h2.Sum(nil)))
	})

	t.Run("MissingIsNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		_, err := s.Stat(ctx, "nope")
		require.ErrorIs(t, err, errs.ErrNotFound)
		_, _, err = s.Get(ctx, "nope/deeper")
		require.ErrorIs(t, err, errs.ErrNotFound)
		require.NoError(t, s.Delete(ctx, "nope"), "deleting a missing blob is not an error")
	})

	t.Run("DeleteRemoves", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, "a/b/c", "one")
		put(t, s, "a/b/d", "two")
		require.NoError(t, s.Delete(ctx, "a/b/c"))
		_, err := s.Stat(ctx, "a/b/c")
		require.ErrorIs(t, err, errs.ErrNotFound)
		require.Equal(t, "two", get(t, s, "a/b/d"), "a sibling survives")
		require.NoError(t, s.Delete(ctx, "a/b/c"), "twice is fine")
		require.NoError(t, s.Delete(ctx, "a/b/d"))
		list, err := s.List(ctx, "")
		require.NoError(t, err)
		require.Empty(t, list)
	})

	t.Run("PutReplaces", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, "k", "first version")
		info, err := s.Put(ctx, blob.PutParams{Key: "k", Body: strings.NewReader("second"), ContentType: "application/json"})
		require.NoError(t, err)
		require.Equal(t, "second", get(t, s, "k"))
		st, err := s.Stat(ctx, "k")
		require.NoError(t, err)
		require.EqualValues(t, 6, st.Size)
		require.Equal(t, info.SHA256, st.SHA256)
		require.Equal(t, "application/json", st.ContentType)
	})

	t.Run("MaxBytesStoresNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		_, err := s.Put(ctx, blob.PutParams{Key: "capped", Body: strings.NewReader("12345"), MaxBytes: 5})
		require.NoError(t, err, "exactly MaxBytes is allowed")
		_, err = s.Put(ctx, blob.PutParams{Key: "capped", Body: strings.NewReader("123456"), MaxBytes: 5})
		require.Equal(t, errs.InvalidRequest, errs.CodeOf(err), "%v", err)
		require.Equal(t, "12345", get(t, s, "capped"), "the earlier blob is untouched")
		_, err = s.Put(ctx, blob.PutParams{Key: "never", Body: io.LimitReader(newPattern(1), 1<<20), MaxBytes: 1000})
		require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))
		_, err = s.Stat(ctx, "never")
		require.ErrorIs(t, err, errs.ErrNotFound)
	})

	t.Run("FailingBodyStoresNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		put(t, s, "f", "kept")
		boom := errors.New("boom")
		_, err := s.Put(ctx, blob.PutParams{Key: "f", Body: io.MultiReader(strings.NewReader("partial"), failing{boom})})
		require.Error(t, err)
		require.Equal(t, "kept", get(t, s, "f"))
		_, err = s.Put(ctx, blob.PutParams{Key: "g", Body: io.MultiReader(strings.NewReader("partial"), failing{boom})})
		require.Error(t, err)
		_, err = s.Stat(ctx, "g")
		require.ErrorIs(t, err, errs.ErrNotFound)
	})

	t.Run("CanceledContextStoresNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.Put(cctx, blob.PutParams{Key: "c", Body: strings.NewReader("x")})
		require.Error(t, err)
		_, err = s.Stat(ctx, "c")
		require.ErrorIs(t, err, errs.ErrNotFound)
	})

	t.Run("BadKeys", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, k := range []string{"", "/abs", "a//b", "a/../b", "..", "./a", "a/", "sp ace", "nul\x00", "back\\slash",
			"q?x", "percent%2e", strings.Repeat("k", blob.MaxKeyLen+1)} {
			_, err := s.Put(ctx, blob.PutParams{Key: k, Body: strings.NewReader("x")})
			require.Equal(t, errs.InvalidRequest, errs.CodeOf(err), "Put(%q): %v", k, err)
			_, err = s.Stat(ctx, k)
			require.Equal(t, errs.InvalidRequest, errs.CodeOf(err), "Stat(%q): %v", k, err)
			_, _, err = s.Get(ctx, k)
			require.Equal(t, errs.InvalidRequest, errs.CodeOf(err), "Get(%q): %v", k, err)
			require.Equal(t, errs.InvalidRequest, errs.CodeOf(s.Delete(ctx, k)), "Delete(%q)", k)
		}
		_, err := s.Put(ctx, blob.PutParams{Key: "ok", Body: strings.NewReader("x"), ContentType: "text/plain\r\nX-Evil: 1"})
		require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))
		list, err := s.List(ctx, "")
		require.NoError(t, err)
		require.Empty(t, list, "nothing was written")
	})

	t.Run("ListByPrefix", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, k := range []string{"tenant/tnt_a/artifacts/art_2", "tenant/tnt_a/artifacts/art_1",
			"tenant/tnt_ab/artifacts/art_3", "tenant/tnt_b/artifacts/art_4", "other"} {
			put(t, s, k, "v:"+k)
		}
		list, err := s.List(ctx, "tenant/tnt_a/")
		require.NoError(t, err)
		require.Equal(t, []string{"tenant/tnt_a/artifacts/art_1", "tenant/tnt_a/artifacts/art_2"}, keys(list))
		require.Equal(t, sum([]byte("v:tenant/tnt_a/artifacts/art_1")), list[0].SHA256)
		require.EqualValues(t, len("v:tenant/tnt_a/artifacts/art_1"), list[0].Size)

		list, err = s.List(ctx, "tenant/tnt_a")
		require.NoError(t, err)
		require.Len(t, list, 3, "a prefix is a string prefix, not a directory")
		list, err = s.List(ctx, "")
		require.NoError(t, err)
		require.Equal(t, []string{"other", "tenant/tnt_a/artifacts/art_1", "tenant/tnt_a/artifacts/art_2",
			"tenant/tnt_ab/artifacts/art_3", "tenant/tnt_b/artifacts/art_4"}, keys(list))
		list, err = s.List(ctx, "missing/")
		require.NoError(t, err)
		require.Empty(t, list)
	})

	t.Run("ConcurrentPuts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var wg sync.WaitGroup
		errc := make(chan error, 16)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Half write distinct keys, half race on one key.
				key := fmt.Sprintf("c/%d", i)
				if i%2 == 0 {
					key = "c/shared"
				}
				_, err := s.Put(ctx, blob.PutParams{Key: key, Body: io.LimitReader(newPattern(uint64(i)), 64<<10)})
				errc <- err
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			require.NoError(t, err)
		}
		// Whichever write won, the shared blob is one whole write.
		rc, info, err := s.Get(ctx, "c/shared")
		require.NoError(t, err)
		h := sha256.New()
		n, err := io.Copy(h, rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		require.EqualValues(t, 64<<10, n)
		require.Equal(t, info.SHA256, hex.EncodeToString(h.Sum(nil)))
		list, err := s.List(ctx, "c/")
		require.NoError(t, err)
		require.Len(t, list, 9)
	})
}

func put(t *testing.T, s blob.Store, key, v string) {
	t.Helper()
	_, err := s.Put(context.Background(), blob.PutParams{Key: key, Body: strings.NewReader(v)})
	require.NoError(t, err)
}

func get(t *testing.T, s blob.Store, key string) string {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return string(b)
}

func keys(list []blob.Info) []string {
	out := make([]string, len(list))
	for i, in := range list {
		out[i] = in.Key
	}
	return out
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

type failing struct{ err error }

func (f failing) Read([]byte) (int, error) { return 0, f.err }

// pattern is an endless deterministic pseudo-random byte stream.
type pattern struct{ r *rand.ChaCha8 }

func newPattern(seed uint64) *pattern {
	var s [32]byte
	s[0] = byte(seed)
	return &pattern{r: rand.NewChaCha8(s)}
}

func (p *pattern) Read(b []byte) (int, error) { return p.r.Read(b) }
