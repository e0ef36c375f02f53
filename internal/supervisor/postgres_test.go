package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

func TestPostgresURLsAndPassword(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	pw, err := PostgresPassword(home)
	require.NoError(t, err)
	require.Len(t, pw, 64)
	again, err := PostgresPassword(home)
	require.NoError(t, err)
	require.Equal(t, pw, again, "kept, not regenerated")
	st, err := os.Stat(PostgresPasswordFile(home))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	u := PostgresURL("0.0.0.0:50085", pw)
	require.Equal(t, "postgres://agentos:"+pw+"@127.0.0.1:50085/agentos?sslmode=disable", u)
	require.Equal(t, "postgres://agentos:"+pw+"@127.0.0.1:50085/postgres?sslmode=disable", maintenanceURL(u))
	s := Service{Name: "postgres", Kind: KindPostgres, URL: u}
	require.Equal(t, "postgres://agentos:xxxxx@127.0.0.1:50085/agentos?sslmode=disable", s.DisplayURL())
	require.Equal(t, "http://127.0.0.1:50081", Service{URL: "http://127.0.0.1:50081"}.DisplayURL())
}

func TestProcForKinds(t *testing.T) {
	t.Parallel()
	require.IsType(t, postgresProc{}, procFor(Service{Name: "postgres", Kind: KindPostgres}))
	require.IsType(t, agentosProc{}, procFor(Service{Name: "orchestrator-2", Kind: "orchestrator"}))
	require.Equal(t, "gateway", Service{Name: "gateway"}.KindOf())
	require.True(t, postgresProc{}.owns("/usr/lib/postgresql/15/bin/postgres\x00-D\x00x"))
	require.False(t, postgresProc{}.owns("/usr/bin/sleep\x0010"))
	require.False(t, agentosProc{}.owns("/usr/lib/postgresql/15/bin/postgres\x00-D"))
}

func TestExternalIsNeverStartedOrStopped(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	ext := Service{Name: "postgres", Kind: KindPostgres, URL: "postgres://u:p@127.0.0.1:1/db", External: true}
	n.Services = append(n.Services, ext)
	_, err := n.Start(ext)
	require.ErrorContains(t, err, "external")
	require.NotContains(t, err.Error(), ":p@")
	require.NoError(t, os.MkdirAll(n.RunDir(), 0o755))
	require.NoError(t, os.WriteFile(n.PIDFile("postgres"), []byte("1\n"), 0o644))
	was, err := n.Stop("postgres", time.Second)
	require.NoError(t, err)
	require.False(t, was)
}

// TestManagedPostgresLifecycle starts the profile's PostgreSQL from the
// machine's binaries in a temp home: initdb (as the user postgres when
// root), healthy, the agentos database created once, durable settings, and
// Stop leaves no server process.
func TestManagedPostgresLifecycle(t *testing.T) {
	if _, err := PostgresBinDir(); err != nil {
		t.Skip(err)
	}
	n := newFakeNode(t)
	// t.TempDir's directories are 0700: let the postgres user through.
	for d := n.Cfg.Home; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		require.NoError(t, err)
		require.NoError(t, os.Chmod(d, st.Mode().Perm()|0o001))
	}
	pw, err := PostgresPassword(n.Cfg.Home)
	require.NoError(t, err)
	addr := testnode.FreeAddr(t)
	s := Service{Name: "postgres", Kind: KindPostgres, Addr: addr, URL: PostgresURL(addr, pw)}
	n.Services = append(n.Services, s)
	ctx := context.Background()

	pid, err := n.Start(s)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = n.Stop("postgres", 10*time.Second) })
	require.NoError(t, n.WaitHealthy(ctx, s, pid, 60*time.Second))
	require.NoError(t, EnsureDatabase(ctx, s))
	require.NoError(t, EnsureDatabase(ctx, s), "idempotent")
	st := n.Inspect(ctx, s)
	require.True(t, st.Healthy, st.Err)
	require.True(t, st.Alive)
	require.NotEmpty(t, st.Version)

	conn, err := pgx.Connect(ctx, s.URL)
	require.NoError(t, err)
	var fsync string
	require.NoError(t, conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync))
	require.Equal(t, "on", fsync)
	require.NoError(t, conn.Close(ctx))
	_, err = pgx.Connect(ctx, strings.Replace(s.URL, pw, "wrong", 1))
	require.Error(t, err, "TCP connections need the password")

	was, err := n.Stop("postgres", 15*time.Second)
	require.NoError(t, err)
	require.True(t, was)
	require.False(t, ProcessAlive(pid))
	require.False(t, n.Inspect(ctx, s).Healthy)

	// A second start reuses the cluster (no initdb) and the database.
	pid, err = n.Start(s)
	require.NoError(t, err)
	require.NoError(t, n.WaitHealthy(ctx, s, pid, 60*time.Second))
	conn, err = pgx.Connect(ctx, s.URL)
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))
	_, err = n.Stop("postgres", 15*time.Second)
	require.NoError(t, err)
	require.False(t, ProcessAlive(pid))
}
