// Package pgtest gives tests of the PostgreSQL adapters an isolated schema
// on the server named by AGENTOS_TEST_POSTGRES_URL (started for CI by
// scripts/pg-test-cluster.sh). Without that variable the tests skip.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// EnvVar names the variable holding the test server's URL.
const EnvVar = "AGENTOS_TEST_POSTGRES_URL"

// BaseURL returns the test server's URL, or skips tb when none is set.
func BaseURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvVar)
	if u == "" {
		tb.Skip(EnvVar + " is not set, so the PostgreSQL adapter is not tested here; " +
			`run eval "$(scripts/pg-test-cluster.sh start)" first (CI sets it)`)
	}
	return u
}

// URL creates a fresh schema on the test server, dropped (with everything
// in it) when tb ends, and returns the server URL with search_path set to
// it. Stores opened on that URL see only their own tables. Cleanups run
// last-in first-out, so a store closed by a cleanup registered after URL
// returns is closed before its schema is dropped.
func URL(tb testing.TB) string {
	tb.Helper()
	base := BaseURL(tb)
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	exec(tb, base, `CREATE SCHEMA `+schema)
	tb.Cleanup(func() { exec(tb, base, `DROP SCHEMA `+schema+` CASCADE`) })
	u, err := url.Parse(base)
	require.NoError(tb, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func exec(tb testing.TB, connURL, sql string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	require.NoError(tb, err, "connect to %s", EnvVar)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	require.NoError(tb, err)
}
