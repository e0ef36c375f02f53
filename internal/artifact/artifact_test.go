package artifact_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/artifact"
	"github.com/nexixai/agentos/internal/blob"
	"github.com/nexixai/agentos/internal/blob/fsblob"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

type recorder struct {
	mu   sync.Mutex
	recs []store.AuditRecord
}

func (r *recorder) Record(_ context.Context, rec store.AuditRecord) (store.AuditRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return rec, nil
}

func (r *recorder) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		out = append(out, rec.Action+" "+rec.Target)
	}
	return out
}

type bundle struct {
	svc   *artifact.Service
	db    *sqlite.DB
	blobs blob.Store
	audit *recorder
	now   *time.Time
}

func setup(t *testing.T, quota int64, retention time.Duration) bundle {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir()+"/a.db")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	blobs, err := fsblob.Open(t.TempDir())
	require.NoError(t, err)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := bundle{db: db, blobs: blobs, audit: &recorder{}, now: &now}
	b.svc, err = artifact.New(artifact.Config{Store: db, Blobs: blobs, Audit: b.audit, Retention: retention, MaxBytes: 1000,
		Quota: func(context.Context, string) (int64, error) { return quota, nil },
		Now:   func() time.Time { return *b.now }})
	require.NoError(t, err)
	return b
}

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestSaveOpenDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, time.Hour)
	ctx := context.Background()
	a, err := b.svc.Save(ctx, artifact.SaveParams{TenantID: "tnt_a", RunID: "run_1", StepID: "stp_1", ToolCallID: "tcall_1",
		Name: "page.html", ContentType: "text/html", Body: strings.NewReader("<p>hi</p>")})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(a.ArtifactID, "art_"))
	require.EqualValues(t, 9, a.Size)
	require.Equal(t, hexSum("<p>hi</p>"), a.SHA256)
	require.Equal(t, b.now.Add(time.Hour), *a.ExpiresAt)

	got, rc, err := b.svc.Open(ctx, "tnt_a", a.ArtifactID)
	require.NoError(t, err)
	body, _ := io.ReadAll(rc)
	require.NoError(t, rc.Close())
	require.Equal(t, "<p>hi</p>", string(body))
	require.Equal(t, a, got)

	_, _, err = b.svc.Open(ctx, "tnt_b", a.ArtifactID)
	require.ErrorIs(t, err, errs.ErrNotFound, "another tenant's artifact does not exist for it")

	require.NoError(t, b.svc.Delete(ctx, a, "usr_x"))
	_, _, err = b.svc.Open(ctx, "tnt_a", a.ArtifactID)
	require.ErrorIs(t, err, errs.ErrNotFound)
	_, err = b.blobs.Stat(ctx, a.BlobKey())
	require.ErrorIs(t, err, errs.ErrNotFound, "the bytes are gone too")
	require.Equal(t, []string{"artifact.create artifact/" + a.ArtifactID, "artifact.delete artifact/" + a.ArtifactID}, b.audit.actions())
}

func TestQuotaKeepsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 100, 0)
	ctx := context.Background()
	a, err := b.svc.Save(ctx, artifact.SaveParams{TenantID: "tnt_a", RunID: "run_1", Name: "a", Body: strings.NewReader(strings.Repeat("x", 60))})
	require.NoError(t, err)
	require.Nil(t, a.ExpiresAt, "no retention: kept until deleted")
	_, err = b.svc.Save(ctx, artifact.SaveParams{TenantID: "tnt_a", RunID: "run_1", Name: "b", Body: strings.NewReader(strings.Repeat("x", 41))})
	require.Equal(t, errs.QuotaExceeded, errs.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, "max_artifact_bytes")
	list, err := b.blobs.List(ctx, "tenant/tnt_a/")
	require.NoError(t, err)
	require.Len(t, list, 1, "the refused body's bytes were not kept")
	_, err = b.svc.Save(ctx, artifact.SaveParams{TenantID: "tnt_a", RunID: "run_1", Name: "c", Body: strings.NewReader(strings.Repeat("x", 40))})
	require.NoError(t, err, "what is left of the quota still fits")
	_, err = b.svc.Save(ctx, artifact.SaveParams{TenantID: "tnt_a", RunID: "run_1", Name: "d", Body: strings.NewReader("x")})
	require.Equal(t, errs.QuotaExceeded, errs.CodeOf(err))
	_, err = b.svc.Save(ctx, artifact.SaveParams{TenantID: "tnt_b", RunID: "run_1", Name: "d", Body: strings.NewReader("x")})
	require.NoError(t, err, "another tenant has its own quota")
}

func TestMaxBytes(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, 0)
	_, err := b.svc.Save(context.Background(), artifact.SaveParams{TenantID: "tnt_a", RunID: "run_1", Name: "big",
		Body: strings.NewReader(strings.Repeat("x", 1001))})
	require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))
}

func TestOpenDetectsChangedBytes(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, 0)
	ctx := context.Background()
	a, err := b.svc.Save(ctx, artifact.SaveParams{TenantID: "tnt_a", RunID: "run_1", Name: "a", Body: strings.NewReader("original")})
	require.NoError(t, err)
	_, err = b.blobs.Put(ctx, blob.PutParams{Key: a.BlobKey(), Body: strings.NewReader("tampered")})
	require.NoError(t, err)
	_, _, err = b.svc.Open(ctx, "tnt_a", a.ArtifactID)
	require.Equal(t, errs.Internal, errs.CodeOf(err))
}

func TestSweepDeletesExpired(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, time.Hour)
	ctx := context.Background()
	old, err := b.svc.Save(ctx, artifact.SaveParams{TenantID: "tnt_a", RunID: "run_1", Name: "old", Body: strings.NewReader("o")})
	require.NoError(t, err)
	*b.now = b.now.Add(30 * time.Minute)
	young, err := b.svc.Save(ctx, artifact.SaveParams{TenantID: "tnt_b", RunID: "run_2", Name: "young", Body: strings.NewReader("y")})
	require.NoError(t, err)
	n, err := b.svc.Sweep(ctx, 10)
	require.NoError(t, err)
	require.Zero(t, n, "nothing expired yet")
	*b.now = b.now.Add(31 * time.Minute)
	n, err = b.svc.Sweep(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = b.svc.Get(ctx, "tnt_a", old.ArtifactID)
	require.ErrorIs(t, err, errs.ErrNotFound)
	_, err = b.blobs.Stat(ctx, old.BlobKey())
	require.ErrorIs(t, err, errs.ErrNotFound)
	_, err = b.svc.Get(ctx, "tnt_b", young.ArtifactID)
	require.NoError(t, err)
	require.Contains(t, b.audit.actions(), "artifact.delete artifact/"+old.ArtifactID)
}
