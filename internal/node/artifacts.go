package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nexixai/agentos/internal/artifact"
	"github.com/nexixai/agentos/internal/blob"
	"github.com/nexixai/agentos/internal/blob/fsblob"
	"github.com/nexixai/agentos/internal/blob/s3blob"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
)

// openArtifacts is the artifact store cfg names (AGENTOS_ARTIFACT_STORE:
// files under ArtifactDir, or an S3-compatible bucket) with its metadata
// in st, each tenant's quotas.storage.max_artifact_bytes, the retention
// and the largest artifact cfg sets.
func openArtifacts(ctx context.Context, cfg config.Config, st store.Store, audit artifact.Auditor, log *slog.Logger) (*artifact.Service, error) {
	var blobs blob.Store
	switch cfg.ArtifactStore {
	case "s3":
		// The S3 adapter spools bodies before uploading; keep them on the
		// data directory's disk, not a possibly small /tmp.
		spool := filepath.Join(cfg.DataDir, "artifact-spool")
		if err := os.MkdirAll(spool, 0o700); err != nil {
			return nil, fmt.Errorf("artifact store: %w", err)
		}
		s, err := s3blob.Open(ctx, s3blob.Config{Endpoint: cfg.ArtifactS3Endpoint, Bucket: cfg.ArtifactS3Bucket,
			Region: cfg.ArtifactS3Region, AccessKey: cfg.ArtifactS3AccessKey, SecretKey: cfg.ArtifactS3SecretKey,
			Prefix: cfg.ArtifactS3Prefix, SpoolDir: spool, Timeouts: outbound.FromConfig(cfg)})
		if err != nil {
			return nil, err
		}
		blobs = s
	default:
		s, err := fsblob.Open(cfg.ArtifactDir)
		if err != nil {
			return nil, err
		}
		blobs = s
	}
	return artifact.New(artifact.Config{Store: st, Blobs: blobs, Audit: audit, Logger: log,
		Retention: cfg.ArtifactRetention, MaxBytes: int64(cfg.ArtifactMaxBytes),
		Quota: func(ctx context.Context, tenantID string) (int64, error) {
			t, err := st.GetTenant(ctx, tenantID)
			return t.Quotas.Storage.MaxArtifactBytes, err
		}})
}
