package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// rewriteFrom edits record seq and re-hashes it and every later record, as
// someone with write access to the database could: the chain stays
// internally consistent.
func rewriteFrom(t *testing.T, db *sqlite.DB, seq int64) {
	t.Helper()
	ctx := context.Background()
	all, err := db.ListAudit(ctx, store.ListAuditParams{Limit: 1000})
	require.NoError(t, err)
	prev := ""
	for _, r := range all {
		if r.Seq == seq {
			r.Target = "forged"
		}
		if r.Seq >= seq {
			r.PrevHash = prev
			b, err := store.CanonicalAudit(r)
			require.NoError(t, err)
			r.Hash = store.HashCanonical(b)
			_, err = db.SQL().ExecContext(ctx, `UPDATE audit_log SET target = ?, prev_hash = ?, hash = ?, record = ? WHERE seq = ?`,
				r.Target, r.PrevHash, r.Hash, b, r.Seq)
			require.NoError(t, err)
		}
		prev = r.Hash
	}
}

func newKey(t *testing.T) *auth.NodeSigner {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return auth.NewNodeSigner(priv)
}

func TestCheckpointSignVerify(t *testing.T) {
	t.Parallel()
	key, other := newKey(t), newKey(t)
	c := Checkpoint{Seq: 42, HeadHash: "ab12", Time: time.Date(2026, 12, 4, 3, 0, 0, 5, time.FixedZone("x", 3600))}.Sign(key)
	require.Equal(t, key.KeyID(), c.KeyID)
	require.Equal(t, time.UTC, c.Time.Location())
	require.NoError(t, c.VerifySignature(key.PublicKey()))
	require.ErrorContains(t, c.VerifySignature(other.PublicKey()), "does not verify with the node key")

	for name, mutate := range map[string]func(*Checkpoint){
		"seq":       func(c *Checkpoint) { c.Seq++ },
		"head hash": func(c *Checkpoint) { c.HeadHash = "ab13" },
		"time":      func(c *Checkpoint) { c.Time = c.Time.Add(time.Nanosecond) },
		"key id":    func(c *Checkpoint) { c.KeyID = other.KeyID() },
		"signature": func(c *Checkpoint) { c.Signature = c.Signature[:10] },
	} {
		bad := c
		mutate(&bad)
		require.Error(t, bad.VerifySignature(key.PublicKey()), name)
	}

	// The file round trip, and the export form (one indented object).
	path := filepath.Join(t.TempDir(), "d", CheckpointFileName)
	require.NoError(t, AppendCheckpoint(path, c))
	require.NoError(t, AppendCheckpoint(path, c))
	cps, exists, err := ReadCheckpoints(path)
	require.NoError(t, err)
	require.True(t, exists)
	require.Len(t, cps, 2)
	require.Equal(t, 2, cps[1].Line)
	require.NoError(t, cps[1].VerifySignature(key.PublicKey()))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	require.NoError(t, os.WriteFile(path, []byte("{\"seq\":1}\n"), 0o600))
	_, _, err = ReadCheckpoints(path)
	require.ErrorContains(t, err, "checkpoint 1: seq, time and signature are required")
	require.NoError(t, os.WriteFile(path, []byte(`{"seq":1,"bogus":true}`), 0o600))
	_, _, err = ReadCheckpoints(path)
	require.ErrorContains(t, err, `unknown field "bogus"`)
	_, exists, err = ReadCheckpoints(filepath.Join(t.TempDir(), "none"))
	require.NoError(t, err)
	require.False(t, exists)
}

// TestCheckpointsDetectRewriteAndTruncation: a chain re-hashed as a whole
// (valid on its own) or cut short still verifies record by record, but not
// against the signed checkpoints; the writer refuses to sign either.
func TestCheckpointsDetectRewriteAndTruncation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	key := newKey(t)
	setup := func(t *testing.T) (*Checkpointer, func() ([]FileCheckpoint, Result)) {
		db := openStore(t)
		a := New(db, nil)
		cp := &Checkpointer{Log: db, Path: filepath.Join(t.TempDir(), CheckpointFileName), Signer: key}
		for i := 0; i < 5; i++ {
			_, err := a.Record(ctx, store.AuditRecord{Action: "tenant.update", TenantID: "tnt_a"})
			require.NoError(t, err)
		}
		c, wrote, err := cp.Write(ctx, false)
		require.NoError(t, err)
		require.True(t, wrote)
		require.EqualValues(t, 5, c.Seq)
		_, wrote, err = cp.Write(ctx, false)
		require.NoError(t, err)
		require.False(t, wrote, "head unchanged: nothing written")
		for i := 0; i < 3; i++ {
			_, err := a.Record(ctx, store.AuditRecord{Action: "token.issue", TenantID: "tnt_a"})
			require.NoError(t, err)
		}
		c, wrote, err = cp.Write(ctx, false)
		require.NoError(t, err)
		require.True(t, wrote)
		require.EqualValues(t, 8, c.Seq)
		check := func() ([]FileCheckpoint, Result) {
			cps, _, err := ReadCheckpoints(cp.Path)
			require.NoError(t, err)
			seqs := []int64{}
			for _, c := range cps {
				seqs = append(seqs, c.Seq)
			}
			res, err := VerifyLogAt(ctx, db, 3, seqs)
			require.NoError(t, err)
			return cps, res
		}
		cps, res := check()
		require.True(t, res.OK)
		require.Empty(t, VerifyCheckpoints(res, cps, key.PublicKey()))
		require.NotEmpty(t, VerifyCheckpoints(res, cps, newKey(t).PublicKey()), "another node's key")
		return cp, check
	}

	t.Run("rewritten", func(t *testing.T) {
		t.Parallel()
		cp, check := setup(t)
		rewriteFrom(t, cp.Log.(*sqlite.DB), 3)
		cps, res := check()
		require.True(t, res.OK, "a re-hashed chain verifies on its own: %s", res.Reason)
		probs := VerifyCheckpoints(res, cps, key.PublicKey())
		require.Len(t, probs, 2)
		require.Equal(t, "rewritten", probs[0].Kind)
		require.Contains(t, probs[0].Message, "audit chain rewritten: record 5 has hash")
		require.Contains(t, probs[0].Message, "checkpoint at seq 5")
		require.Contains(t, probs[0].Message, "line 1")
		_, _, err := cp.Write(ctx, true)
		require.ErrorContains(t, err, "audit chain rewritten: record 8")
	})
	t.Run("truncated", func(t *testing.T) {
		t.Parallel()
		cp, check := setup(t)
		_, err := cp.Log.(*sqlite.DB).SQL().ExecContext(ctx, `DELETE FROM audit_log WHERE seq > 6`)
		require.NoError(t, err)
		cps, res := check()
		require.True(t, res.OK)
		probs := VerifyCheckpoints(res, cps, key.PublicKey())
		require.Len(t, probs, 1)
		require.Equal(t, "truncated", probs[0].Kind)
		require.Contains(t, probs[0].Message, "audit chain truncated: it ends at seq 6, but the checkpoint at seq 8")
		_, _, err = cp.Write(ctx, true)
		require.ErrorContains(t, err, "audit chain truncated: record 8, the head of the last checkpoint at seq 8")
	})
	t.Run("forged checkpoint line", func(t *testing.T) {
		t.Parallel()
		cp, check := setup(t)
		b, err := os.ReadFile(cp.Path)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(cp.Path, []byte(strings.Replace(string(b), `"seq":5`, `"seq":4`, 1)), 0o600))
		cps, res := check()
		probs := VerifyCheckpoints(res, cps, key.PublicKey())
		require.Len(t, probs, 1)
		require.Equal(t, "signature", probs[0].Kind)
		require.Contains(t, probs[0].Message, "checkpoint at seq 4")
	})
}

// TestCheckpointerRunSignsOnStop: the periodic writer signs the head once
// more when its context ends (a clean stop leaves the final head signed).
func TestCheckpointerRunSignsOnStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openStore(t)
	_, err := New(db, nil).Record(ctx, store.AuditRecord{Action: "tenant.create", TenantID: "tnt_a"})
	require.NoError(t, err)
	cp := &Checkpointer{Log: db, Path: filepath.Join(t.TempDir(), CheckpointFileName), Signer: newKey(t)}
	stop, cancel := context.WithCancel(ctx)
	cancel()
	cp.Run(stop, time.Hour)
	last, ok, err := LastCheckpoint(cp.Path)
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 1, last.Seq)
}
