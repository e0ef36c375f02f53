package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/auth"
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
	require.Equal(t, "audit chain ok: 3 records\nno checkpoints: a rewritten or truncated chain cannot be detected (see `agentos audit checkpoint`)\n", out)

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

// TestAuditCheckpointCmd: checkpoint writes a signed checkpoint, --export
// prints it, and verify detects, from the node's file and from an exported
// copy, a chain rewritten as a whole (exit 3 naming the record and the
// checkpoint) and a truncated tail (exit 3), while a broken record is exit 1.
func TestAuditCheckpointCmd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	dbPath := filepath.Join(dataDir, "agentos.db")
	db, err := sqlite.Open(ctx, dbPath)
	require.NoError(t, err)
	defer db.Close()
	a := audit.New(db, nil)
	record := func(n int) {
		for i := 0; i < n; i++ {
			_, err := a.Record(ctx, store.AuditRecord{Action: "token.issue", TenantID: "tnt_a",
				Details: map[string]any{"usage": struct {
					B int `json:"b"`
					A int `json:"a"`
				}{i, i}}})
			require.NoError(t, err)
		}
	}
	record(3)
	run := func(args ...string) (string, int) {
		cmd := newAuditCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--env-file", filepath.Join(dir, "none.env"), "--home", dir, "--data-dir", dataDir))
		err := cmd.ExecuteContext(ctx)
		var ee *ExitError
		switch {
		case err == nil:
			return out.String(), 0
		case errors.As(err, &ee):
			return out.String() + fmt.Sprint(ee.Err), ee.Code
		}
		return out.String() + err.Error(), -1
	}

	out, code := run("checkpoint")
	require.Equal(t, -1, code, "no node key yet: %s", out)
	require.Contains(t, out, "node key")
	_, err = auth.LoadOrCreateNodeKey(filepath.Join(dir, "keys", "node_ed25519.pem"), true)
	require.NoError(t, err)
	out, code = run("checkpoint", "--export")
	require.Equal(t, 1, code)
	require.Contains(t, out, "no checkpoint in")

	out, code = run("checkpoint")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "audit checkpoint written: seq 3, head ")
	out, code = run("checkpoint", "--export")
	require.Equal(t, 0, code, out)
	var exported audit.Checkpoint
	require.NoError(t, json.Unmarshal([]byte(out), &exported))
	require.EqualValues(t, 3, exported.Seq)
	kept := filepath.Join(t.TempDir(), "kept.json")
	require.NoError(t, os.WriteFile(kept, []byte(out), 0o600))

	record(2)
	out, code = run("verify", "--checkpoint", kept)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "audit chain ok: 5 records\ncheckpoints ok: 2 signed checkpoints hold (latest at seq 3")

	// Rewrite record 2 and re-hash every record after it: the chain is
	// consistent, the checkpoints are not.
	all, err := db.ListAudit(ctx, store.ListAuditParams{})
	require.NoError(t, err)
	prev := all[0].Hash
	for _, r := range all[1:] {
		if r.Seq == 2 {
			r.Outcome = "denied"
		}
		r.PrevHash = prev
		b, err := store.CanonicalAudit(r)
		require.NoError(t, err)
		r.Hash = store.HashCanonical(b)
		_, err = db.SQL().ExecContext(ctx, `UPDATE audit_log SET outcome = ?, prev_hash = ?, hash = ?, record = ? WHERE seq = ?`,
			r.Outcome, r.PrevHash, r.Hash, b, r.Seq)
		require.NoError(t, err)
		prev = r.Hash
	}
	out, code = run("verify", "--checkpoint", kept)
	require.Equal(t, exitAuditCheckpoint, code, out)
	require.Contains(t, out, "audit chain ok: 5 records\n")
	require.Contains(t, out, "audit chain rewritten: record 3 has hash")
	require.Contains(t, out, "audit-checkpoints.jsonl line 1")
	require.Contains(t, out, "kept.json line 1")
	out, code = run("checkpoint")
	require.Equal(t, 1, code)
	require.Contains(t, out, "audit chain rewritten: record 3")

	// Truncated: the chain ends before the checkpoint.
	_, err = db.SQL().ExecContext(ctx, `DELETE FROM audit_log WHERE seq > 2`)
	require.NoError(t, err)
	out, code = run("verify")
	require.Equal(t, exitAuditCheckpoint, code, out)
	require.Contains(t, out, "audit chain truncated: it ends at seq 2, but the checkpoint at seq 3")

	// A forged checkpoint file line.
	cpFile := filepath.Join(dataDir, "audit-checkpoints.jsonl")
	b, err := os.ReadFile(cpFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cpFile, bytes.Replace(b, []byte(`"seq":3`), []byte(`"seq":2`), 1), 0o600))
	out, code = run("verify")
	require.Equal(t, exitAuditCheckpoint, code, out)
	require.Contains(t, out, "checkpoint at seq 2 (time ")
	require.Contains(t, out, "signature does not verify with the node key")

	// A record whose bytes no longer match its hash: exit 1, named.
	_, err = db.SQL().ExecContext(ctx, `UPDATE audit_log SET record = CAST(replace(CAST(record AS TEXT), '"a":1', '"a":7') AS BLOB) WHERE seq = 2`)
	require.NoError(t, err)
	out, code = run("verify")
	require.Equal(t, exitAuditBroken, code, out)
	require.Contains(t, out, "audit chain broken at seq 2 (aud_")
	require.Contains(t, out, "hash mismatch: the stored record bytes do not match its hash")

	out, code = run("verify", "--checkpoint", filepath.Join(dir, "missing.json"))
	require.Equal(t, -1, code)
	require.Contains(t, out, "missing.json: no such file")
}
