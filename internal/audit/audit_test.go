package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "agentos.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// lockedBuffer is a concurrency-safe sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func record(t *testing.T, a *Auditor, ctx context.Context, action string) store.AuditRecord {
	t.Helper()
	r, err := a.Record(ctx, store.AuditRecord{Action: action, Target: "tenant/tnt_a",
		Details: map[string]any{"n": 1, "s": "x"}})
	require.NoError(t, err)
	return r
}

func TestRecordFillsAndWritesSink(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	sink := &lockedBuffer{}
	a := New(db, sink)

	ctx := httpx.WithCorrelationID(context.Background(), "corr_test")
	ctx = auth.With(ctx, auth.Context{TenantID: "tnt_a", Principal: auth.Principal{PrincipalID: "usr_alice"}})
	r := record(t, a, ctx, "tenant.update")
	require.True(t, strings.HasPrefix(r.AuditID, "aud_"))
	require.Equal(t, "corr_test", r.CorrelationID)
	require.Equal(t, "tnt_a", r.TenantID)
	require.Equal(t, "usr_alice", r.PrincipalID)
	require.Equal(t, OutcomeSuccess, r.Outcome)
	require.EqualValues(t, 1, r.Seq)
	require.Equal(t, "", r.PrevHash)
	require.Equal(t, store.HashCanonical(r.Stored.Canonical), r.Hash)
	canon, err := store.CanonicalAudit(r)
	require.NoError(t, err)
	require.Equal(t, string(canon), string(r.Stored.Canonical))
	require.False(t, r.Time.IsZero())

	explicit, err := a.Record(context.Background(), store.AuditRecord{Action: "token.revoke", TenantID: "tnt_b",
		PrincipalID: "usr_x", Outcome: OutcomeDenied, CorrelationID: "corr_given"})
	require.NoError(t, err)
	require.Equal(t, "tnt_b", explicit.TenantID)
	require.Equal(t, OutcomeDenied, explicit.Outcome)
	require.Equal(t, "corr_given", explicit.CorrelationID)
	require.Equal(t, r.Hash, explicit.PrevHash)

	// The sink holds one JSON line per record, equal to the stored record.
	sc := bufio.NewScanner(strings.NewReader(sink.String()))
	var lines []store.AuditRecord
	for sc.Scan() {
		var got store.AuditRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &got))
		lines = append(lines, got)
	}
	require.Len(t, lines, 2)
	require.Equal(t, r.Hash, lines[0].Hash)
	require.Equal(t, explicit.AuditID, lines[1].AuditID)
	ok, _, reason := Verify(lines)
	require.True(t, ok, reason)

	_, err = a.Record(ctx, store.AuditRecord{})
	require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))

	// An actor acting on behalf of another principal: both are recorded.
	ctx = auth.With(ctx, auth.Context{TenantID: "tnt_a", Principal: auth.Principal{PrincipalID: "usr_alice"}, Actor: "svc_backend"})
	obo := record(t, a, ctx, "run.create")
	require.Equal(t, "svc_backend", obo.PrincipalID)
	require.Equal(t, "usr_alice", obo.OnBehalfOf)
	stored, err := db.ListAudit(context.Background(), store.ListAuditParams{AfterSeq: obo.Seq - 1})
	require.NoError(t, err)
	require.Equal(t, "svc_backend", stored[0].PrincipalID)
	require.Equal(t, "usr_alice", stored[0].OnBehalfOf)
	require.Contains(t, string(stored[0].Stored.Canonical), `"on_behalf_of":"usr_alice"`)
	canonical, err := store.CanonicalAudit(stored[0])
	require.NoError(t, err)
	require.Equal(t, obo.Hash, store.HashCanonical(canonical), "on_behalf_of is part of the hashed record")
	tampered := stored[0]
	tampered.OnBehalfOf = "usr_bob"
	canonical, err = store.CanonicalAudit(tampered)
	require.NoError(t, err)
	require.NotEqual(t, obo.Hash, store.HashCanonical(canonical))
}

func TestSinkFailureIsNotFatal(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	a := New(db, failingWriter{})
	r, err := a.Record(context.Background(), store.AuditRecord{Action: "x"})
	require.NoError(t, err)
	recs, err := db.ListAudit(context.Background(), store.ListAuditParams{})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, r.AuditID, recs[0].AuditID)
}

func TestConcurrentRecords(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	sink := &lockedBuffer{}
	a := New(db, sink)
	var wg sync.WaitGroup
	errc := make(chan error, 40)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				_, err := a.Record(context.Background(), store.AuditRecord{Action: "run.create", TenantID: "tnt_a"})
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		require.NoError(t, err)
	}
	res, err := VerifyLog(context.Background(), db, 7)
	require.NoError(t, err)
	require.True(t, res.OK, res.Reason)
	require.EqualValues(t, 40, res.Records)
	require.Equal(t, 40, strings.Count(sink.String(), "\n"))
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	build := func(t *testing.T) (*sqlite.DB, []store.AuditRecord) {
		db := openStore(t)
		a := New(db, nil)
		for _, act := range []string{"a", "b", "c", "d", "e"} {
			record(t, a, ctx, act)
		}
		recs, err := db.ListAudit(ctx, store.ListAuditParams{})
		require.NoError(t, err)
		require.Len(t, recs, 5)
		ok, _, reason := Verify(recs)
		require.True(t, ok, reason)
		return db, recs
	}

	t.Run("in memory", func(t *testing.T) {
		t.Parallel()
		_, recs := build(t)
		cases := []struct {
			name   string
			mutate func(rs []store.AuditRecord) []store.AuditRecord
			seq    int64
			reason string
		}{
			{"edited content", func(rs []store.AuditRecord) []store.AuditRecord {
				rs[2].Outcome = "denied"
				return rs
			}, 3, "differ from its hashed bytes (field outcome)"},
			{"edited details", func(rs []store.AuditRecord) []store.AuditRecord {
				rs[1].Details = map[string]any{"n": 2}
				return rs
			}, 2, "field details"},
			{"edited stored bytes", func(rs []store.AuditRecord) []store.AuditRecord {
				b := []byte(string(rs[1].Stored.Canonical))
				b[len(b)-3] ^= 1
				rs[1].Stored = &store.StoredAudit{Canonical: b}
				return rs
			}, 2, "hash mismatch"},
			{"edited, no stored bytes", func(rs []store.AuditRecord) []store.AuditRecord {
				rs[1].Action = "forged"
				rs[1].Stored = nil
				return rs
			}, 2, "not in the canonical form"},
			{"edited and rehashed", func(rs []store.AuditRecord) []store.AuditRecord {
				rs[1].Action = "forged"
				rs[1].Stored = nil
				rs[1].Hash = hashOfRecord(rs[1])
				return rs
			}, 3, "prev_hash"},
			{"record removed", func(rs []store.AuditRecord) []store.AuditRecord {
				return append(rs[:2:2], rs[3:]...)
			}, 4, "seq gap"},
			{"first prev_hash forged", func(rs []store.AuditRecord) []store.AuditRecord {
				rs[0].PrevHash = "abc"
				rs[0].Stored = nil
				rs[0].Hash = hashOfRecord(rs[0])
				return rs
			}, 1, "first record"},
		}
		for _, tc := range cases {
			rs := append([]store.AuditRecord(nil), recs...)
			ok, seq, reason := Verify(tc.mutate(rs))
			require.False(t, ok, tc.name)
			require.Equal(t, tc.seq, seq, tc.name)
			require.Contains(t, reason, tc.reason, tc.name)
		}
		// A page from the middle of the chain verifies on its own.
		ok, _, reason := Verify(recs[2:])
		require.True(t, ok, reason)
		ok, _, _ = Verify(nil)
		require.True(t, ok)
	})

	t.Run("in the database", func(t *testing.T) {
		t.Parallel()
		db, _ := build(t)
		_, err := db.SQL().ExecContext(ctx, `UPDATE audit_log SET action = 'forged' WHERE seq = 4`)
		require.NoError(t, err)
		res, err := VerifyLog(ctx, db, 2)
		require.NoError(t, err)
		require.False(t, res.OK)
		require.EqualValues(t, 4, res.BrokenSeq)
		require.EqualValues(t, 3, res.Records)
		require.Contains(t, res.Reason, "columns differ from its hashed bytes (field action)")
		require.True(t, strings.HasPrefix(res.BrokenID, "aud_"))
	})

	t.Run("deleted from the database", func(t *testing.T) {
		t.Parallel()
		db, _ := build(t)
		_, err := db.SQL().ExecContext(ctx, `DELETE FROM audit_log WHERE seq = 1`)
		require.NoError(t, err)
		res, err := VerifyLog(ctx, db, 0)
		require.NoError(t, err)
		require.False(t, res.OK)
		require.EqualValues(t, 2, res.BrokenSeq)
		require.Contains(t, res.Reason, "missing")
	})
}

func TestOpenSink(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "deep", "audit", "audit.jsonl")
	for i := 0; i < 2; i++ {
		w, err := OpenSink("file:" + path)
		require.NoError(t, err)
		_, err = w.Write([]byte("line\n"))
		require.NoError(t, err)
		require.NoError(t, w.Close())
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "line\nline\n", string(b), "append mode")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	for _, spec := range []string{"stdout", "stderr", "none"} {
		w, err := OpenSink(spec)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	}
	for _, spec := range []string{"", "file:", "syslog", "http://x"} {
		_, err := OpenSink(spec)
		require.Error(t, err, spec)
	}
}

// TestVerifyLegacyThenCanonical: a data dir written by the old code (no
// canonical bytes; the hash covers the map columns as stored, here a
// struct's field order, which re-encoding would sort) keeps verifying, new
// records are canonical after it, and a record stripped of its canonical
// bytes after the switch is a break.
func TestVerifyLegacyThenCanonical(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openStore(t)
	prev := ""
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for seq := int64(1); seq <= 2; seq++ {
		r := store.AuditRecord{AuditID: fmt.Sprintf("aud_old%d", seq), Seq: seq, Time: at, TenantID: "tnt_a",
			PrincipalID: "usr_a", Action: "model.chat", Outcome: "success", CorrelationID: "c", PrevHash: prev}
		details := []byte(`{"usage":{"output_tokens":2,"input_tokens":1}}`) // struct order, not sorted
		r.Hash = store.LegacyHashAuditEncoded(r, nil, details)
		require.NotEqual(t, store.LegacyHashAudit(r), r.Hash, "re-encoding differs: the defect")
		_, err := db.SQL().ExecContext(ctx, `INSERT INTO audit_log (tenant_id, seq, audit_id, time, principal_id, action,
			target, outcome, policy_context, details, correlation_id, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,NULL,?,?,?,?)`,
			r.TenantID, r.Seq, r.AuditID, r.Time.UnixMicro(), r.PrincipalID, r.Action, r.Target, r.Outcome,
			string(details), r.CorrelationID, r.PrevHash, r.Hash)
		require.NoError(t, err)
		prev = r.Hash
	}
	a := New(db, nil)
	for i := 0; i < 2; i++ {
		_, err := a.Record(ctx, store.AuditRecord{Action: "model.chat", TenantID: "tnt_a",
			Details: map[string]any{"usage": struct {
				Out int `json:"output_tokens"`
				In  int `json:"input_tokens"`
			}{2, 1}}})
		require.NoError(t, err)
	}
	res, err := VerifyLog(ctx, db, 0)
	require.NoError(t, err)
	require.True(t, res.OK, res.Reason)
	require.EqualValues(t, 4, res.Records)
	require.EqualValues(t, 2, res.Legacy)
	require.EqualValues(t, 3, res.SwitchSeq)

	_, err = db.SQL().ExecContext(ctx, `UPDATE audit_log SET record = NULL WHERE seq = 4`)
	require.NoError(t, err)
	res, err = VerifyLog(ctx, db, 0)
	require.NoError(t, err)
	require.False(t, res.OK)
	require.EqualValues(t, 4, res.BrokenSeq)
	require.Contains(t, res.Reason, "canonical since seq 3")
}
