// Package artifact is the shared artifact store: files tools and workers
// produce during a run (a large http.fetch body, a worker's output file).
// Bytes go to the blob port (internal/blob: the data directory or an S3
// bucket), metadata to the store (store.ArtifactStore), which is what the
// API lists, the tenant's quota counts and the retention sweeper walks.
//
// Order of writes, so that a crash leaves nothing a reader can trip on:
// Save writes the blob, then the metadata (a crash between them leaves an
// unlisted blob, never a listed artifact without bytes); Delete removes
// the blob, then the metadata (a crash between them leaves a listed
// artifact that answers not_found on download until the sweeper or a
// second delete finishes the job).
package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nexixai/agentos/internal/blob"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// DefaultMaxBytes is the largest single artifact Service accepts when
// Config.MaxBytes is 0.
const DefaultMaxBytes = 100 << 20

// Auditor records audit records (*audit.Auditor satisfies it).
type Auditor interface {
	Record(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error)
}

// Config is what a Service needs.
type Config struct {
	Store store.ArtifactStore // required
	Blobs blob.Store          // required
	// Quota returns a tenant's quotas.storage.max_artifact_bytes (0 =
	// unlimited); nil: unlimited for every tenant.
	Quota func(ctx context.Context, tenantID string) (int64, error)
	// Retention is how long an artifact is kept (AGENTOS_ARTIFACT_RETENTION);
	// 0 keeps artifacts until deleted.
	Retention time.Duration
	// MaxBytes caps one artifact; default DefaultMaxBytes.
	MaxBytes int64
	Audit    Auditor // nil: no audit records
	Now      func() time.Time
	Logger   *slog.Logger
}

// Service saves, opens and deletes artifacts. Safe for concurrent use.
type Service struct{ cfg Config }

// New returns a Service; cfg.Store and cfg.Blobs are required.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Blobs == nil {
		return nil, errors.New("artifact: Store and Blobs are required")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg}, nil
}

// MaxBytes is the largest artifact the service accepts.
func (s *Service) MaxBytes() int64 { return s.cfg.MaxBytes }

// SaveParams is one artifact to store.
type SaveParams struct {
	TenantID, RunID, StepID, ToolCallID string
	// PrincipalID is who the audit record names (the run's principal).
	PrincipalID string
	Name        string // required: a file name for downloads
	ContentType string // default application/octet-stream
	Body        io.Reader
}

// Save streams p.Body to the blob store and records the artifact. A body
// that would take the tenant past quotas.storage.max_artifact_bytes is
// quota_exceeded; one longer than MaxBytes is invalid_request. Either way
// nothing is kept.
func (s *Service) Save(ctx context.Context, p SaveParams) (store.Artifact, error) {
	if err := store.Required("tenant_id", p.TenantID, "run_id", p.RunID, "name", p.Name); err != nil {
		return store.Artifact{}, err
	}
	quota, used, err := s.usage(ctx, p.TenantID)
	if err != nil {
		return store.Artifact{}, err
	}
	limit, byQuota := s.cfg.MaxBytes, false
	if quota > 0 {
		if used >= quota {
			return store.Artifact{}, quotaError(quota, used, 1)
		}
		if quota-used < limit {
			limit, byQuota = quota-used, true
		}
	}
	a := store.Artifact{ArtifactID: ids.New("art_"), TenantID: p.TenantID, RunID: p.RunID, StepID: p.StepID,
		ToolCallID: p.ToolCallID, Name: p.Name}
	info, err := s.cfg.Blobs.Put(ctx, blob.PutParams{Key: a.BlobKey(), Body: p.Body, ContentType: p.ContentType, MaxBytes: limit})
	if err != nil {
		if byQuota && errs.CodeOf(err) == errs.InvalidRequest && errorField(err) == "body" {
			return store.Artifact{}, quotaError(quota, used, limit+1)
		}
		return store.Artifact{}, err
	}
	a.ContentType, a.Size, a.SHA256 = info.ContentType, info.Size, info.SHA256
	a.CreatedAt = s.cfg.Now().UTC().Truncate(time.Microsecond)
	if s.cfg.Retention > 0 {
		exp := a.CreatedAt.Add(s.cfg.Retention)
		a.ExpiresAt = &exp
	}
	if err := s.cfg.Store.CreateArtifact(ctx, store.CreateArtifactParams{Artifact: a, MaxBytes: quota}); err != nil {
		// Not recorded: drop the bytes (a concurrent Save may have used
		// the quota meanwhile). A context already done still gets the
		// delete, bounded on its own.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := s.cfg.Blobs.Delete(dctx, a.BlobKey()); derr != nil {
			s.cfg.Logger.Warn("artifact: orphan blob after a failed create", "key", a.BlobKey(), "err", derr)
		}
		return store.Artifact{}, err
	}
	s.audit(ctx, a, p.PrincipalID, "artifact.create")
	return a, nil
}

func (s *Service) usage(ctx context.Context, tenantID string) (quota, used int64, err error) {
	if s.cfg.Quota == nil {
		return 0, 0, nil
	}
	if quota, err = s.cfg.Quota(ctx, tenantID); err != nil || quota <= 0 {
		return 0, 0, err
	}
	used, err = s.cfg.Store.ArtifactBytes(ctx, tenantID)
	return quota, used, err
}

func quotaError(quota, used, requested int64) error {
	return errs.E(errs.QuotaExceeded, "max_artifact_bytes: storing %d more bytes would exceed the tenant's artifact quota of %d bytes (%d used)",
		requested, quota, used).
		WithDetails(map[string]any{"quota": "max_artifact_bytes", "limit": quota, "used": used, "requested": requested})
}

func errorField(err error) string {
	var e *errs.Error
	if errors.As(err, &e) {
		f, _ := e.Details["field"].(string)
		return f
	}
	return ""
}

// Get returns an artifact's metadata. ErrNotFound if absent or another
// tenant's.
func (s *Service) Get(ctx context.Context, tenantID, artifactID string) (store.Artifact, error) {
	return s.cfg.Store.GetArtifact(ctx, tenantID, artifactID)
}

// List returns a run's artifacts, oldest first.
func (s *Service) List(ctx context.Context, tenantID, runID string) ([]store.Artifact, error) {
	return s.cfg.Store.ListRunArtifacts(ctx, tenantID, runID)
}

// Open returns an artifact and a reader of its bytes (the caller closes
// it). ErrNotFound if absent or another tenant's; internal_error if the
// stored bytes are not the ones recorded (their size or SHA-256 differ).
func (s *Service) Open(ctx context.Context, tenantID, artifactID string) (store.Artifact, io.ReadCloser, error) {
	a, err := s.cfg.Store.GetArtifact(ctx, tenantID, artifactID)
	if err != nil {
		return store.Artifact{}, nil, err
	}
	rc, info, err := s.cfg.Blobs.Get(ctx, a.BlobKey())
	if err != nil {
		return store.Artifact{}, nil, err
	}
	if info.Size != a.Size || info.SHA256 != a.SHA256 {
		_ = rc.Close()
		return store.Artifact{}, nil, errs.E(errs.Internal, "artifact %s: stored bytes (%d, %s) differ from its record (%d, %s)",
			a.ArtifactID, info.Size, info.SHA256, a.Size, a.SHA256)
	}
	return a, rc, nil
}

// Delete removes an artifact's bytes, then its record, and audits it
// (principalID: who deleted it). ErrNotFound if the record is gone.
func (s *Service) Delete(ctx context.Context, a store.Artifact, principalID string) error {
	if err := s.cfg.Blobs.Delete(ctx, a.BlobKey()); err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteArtifact(ctx, a.TenantID, a.ArtifactID); err != nil {
		return err
	}
	s.audit(ctx, a, principalID, "artifact.delete")
	return nil
}

// SweeperPrincipal is the principal of the sweeper's audit records.
const SweeperPrincipal = "svc_artifact_retention"

// Sweep deletes up to batch artifacts that expired by now and returns how
// many it deleted. Another replica sweeping the same artifact is not an
// error (one of them deletes it).
func (s *Service) Sweep(ctx context.Context, batch int) (int, error) {
	expired, err := s.cfg.Store.ExpiredArtifacts(ctx, s.cfg.Now(), batch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range expired {
		err := s.Delete(ctx, a, SweeperPrincipal)
		switch {
		case err == nil:
			n++
		case errors.Is(err, errs.ErrNotFound):
		default:
			return n, fmt.Errorf("artifact %s/%s: %w", a.TenantID, a.ArtifactID, err)
		}
	}
	return n, nil
}

// RunSweeper sweeps every interval until ctx ends, each time until no
// expired artifact is left.
func (s *Service) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			n, err := s.Sweep(ctx, 100)
			if err != nil {
				if ctx.Err() == nil {
					s.cfg.Logger.Warn("artifact retention sweep", "err", err)
				}
				break
			}
			if n < 100 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) audit(ctx context.Context, a store.Artifact, principalID, action string) {
	if s.cfg.Audit == nil {
		return
	}
	_, err := s.cfg.Audit.Record(ctx, store.AuditRecord{TenantID: a.TenantID, PrincipalID: principalID,
		Action: action, Target: "artifact/" + a.ArtifactID, Outcome: "success",
		Details: map[string]any{"run_id": a.RunID, "name": a.Name, "size": a.Size, "sha256": a.SHA256}})
	if err != nil {
		s.cfg.Logger.Warn("audit", "action", action, "artifact_id", a.ArtifactID, "err", err)
	}
}
