package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/internal/store/storetest"
)

// MustOpen opens a fresh database file under t.TempDir, closed at cleanup.
func MustOpen(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "data", "agentos.db"))
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, db.Close()) })
	return db
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return MustOpen(t) })
}

func TestConformanceInMemory(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := sqlite.OpenURL(context.Background(), "sqlite::memory:")
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, db.Close()) })
		return db
	})
}

func TestMigrationsApplyOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nested", "dir", "a.db")
	db, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	v, err := db.SchemaVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, 10, v)
	require.NoError(t, db.CreateTenant(ctx, store.Tenant{TenantID: "ten_a", Name: "A"}))
	require.NoError(t, db.Close())

	db, err = sqlite.OpenURL(ctx, "sqlite://"+path)
	require.NoError(t, err)
	defer db.Close()
	v, err = db.SchemaVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, 10, v)
	var n int
	require.NoError(t, db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n))
	require.Equal(t, 8, n)
	got, err := db.GetTenant(ctx, "ten_a")
	require.NoError(t, err)
	require.Equal(t, "A", got.Name)

	var mode string
	require.NoError(t, db.SQL().QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode))
	require.Equal(t, "wal", mode)
	var fk int
	require.NoError(t, db.SQL().QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk))
	require.Equal(t, 1, fk)
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url, want string
	}{
		{"absolute", "sqlite:///var/lib/agentos/agentos.db", "/var/lib/agentos/agentos.db"},
		{"relative", "sqlite://.agentos/data/agentos.db", ".agentos/data/agentos.db"},
		{"memory", "sqlite::memory:", ":memory:"},
		{"memory slashes", "sqlite://:memory:", ":memory:"},
		{"file absolute", "file:///tmp/x.db", "/tmp/x.db"},
		{"file single slash", "file:/tmp/x.db", "/tmp/x.db"},
		{"file relative", "file:x.db", "x.db"},
		{"file memory", "file::memory:", ":memory:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sqlite.ParseURL(tc.url)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	for _, tc := range []struct{ name, url string }{
		{"postgres", "postgres://u@localhost/db"},
		{"mysql", "mysql://x"},
		{"bare path", "/tmp/x.db"},
		{"empty", ""},
		{"no path", "sqlite://"},
		{"query", "sqlite:///tmp/x.db?mode=ro"},
	} {
		t.Run("bad "+tc.name, func(t *testing.T) {
			_, err := sqlite.ParseURL(tc.url)
			require.True(t, errors.Is(err, errs.ErrInvalid), "got %v", err)
			var e *errs.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, "store_url", e.Details["field"])
		})
	}
	_, err := sqlite.OpenURL(context.Background(), "postgres://localhost/agentos")
	require.ErrorContains(t, err, `unsupported store URL scheme "postgres"`)
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"sqlite:///a/b.db", "sqlite://a.db", "sqlite::memory:", "file:x", "postgres://x", "", "sqlite://a?b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, url string) {
		path, err := sqlite.ParseURL(url)
		if err != nil {
			require.True(t, errors.Is(err, errs.ErrInvalid), "error %v is not invalid_request", err)
			require.Empty(t, path)
			return
		}
		require.NotEmpty(t, path)
		require.NotContains(t, path, "?")
		require.NotContains(t, path, "#")
	})
}
