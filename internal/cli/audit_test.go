package cli

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

func TestAuditVerifyCmd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	dbPath := filepath.Join(dataDir, "agentos.db")
	db, err := sqlite.Open(ctx, dbPath)
	require.NoError(t, err)
	a := audit.New(db, nil)
	for _, act := range []string{"tenant.create", "token.issue", "agent.put"} {
		_, err := a.Record(ctx, store.AuditRecord{Action: act, TenantID: "tnt_a"})
		require.NoError(t, err)
	}

	run := func(args ...string) (string, error) {
		cmd := newAuditCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--env-file", filepath.Join(dir, "none.env"), "--home", dir))
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}

	out, err := run("verify", "--data-dir", dataDir)
	require.NoError(t, err, out)
	require.Equal(t, "audit chain ok: 3 records\n", out)

	out, err = run("verify", "--store", "sqlite://"+dbPath)
	require.NoError(t, err, out)
	require.Contains(t, out, "ok: 3 records")

	_, err = db.SQL().ExecContext(ctx, `UPDATE audit_log SET target = 'tampered' WHERE seq = 2`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	out, err = run("verify", "--data-dir", dataDir)
	var ee *ExitError
	require.True(t, errors.As(err, &ee), "err: %v", err)
	require.Equal(t, 1, ee.Code)
	require.Contains(t, out, "audit chain broken at seq 2 (aud_")
	require.Contains(t, out, "the record's columns differ from its hashed bytes (field target)")

	_, err = run("verify", "--data-dir", filepath.Join(dir, "nowhere"))
	require.ErrorContains(t, err, "no store at")
	_, err = run("verify", "--store", "mysql://db/x")
	require.ErrorContains(t, err, "unsupported store URL scheme")
}
