package store

import (
	"context"
	"time"
)

// Artifact is the metadata of a file a tool or worker produced during a
// run (a large http.fetch body, a worker's output file). Its bytes are in
// the blob store under BlobKey; the store keeps what the API lists and
// what the quota and the retention sweeper count.
type Artifact struct {
	ArtifactID string `json:"artifact_id"`
	TenantID   string `json:"tenant_id"`
	RunID      string `json:"run_id"`
	// StepID and ToolCallID name the step (and tool call) that produced it;
	// empty when not known.
	StepID      string    `json:"step_id"`
	ToolCallID  string    `json:"tool_call_id"`
	Name        string    `json:"name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	CreatedAt   time.Time `json:"created_at"`
	// ExpiresAt is when the retention sweeper deletes it; nil: never.
	ExpiresAt *time.Time `json:"expires_at"`
}

// BlobKey is where an artifact's bytes are in the blob store: tenant first,
// as every storage key (CONTRACT §8).
func (a Artifact) BlobKey() string {
	return ArtifactBlobKey(a.TenantID, a.ArtifactID)
}

// ArtifactBlobKey is BlobKey for a tenant and artifact id.
func ArtifactBlobKey(tenantID, artifactID string) string {
	return "tenant/" + tenantID + "/artifacts/" + artifactID
}

// Validate checks the fields every artifact needs.
func (a Artifact) Validate() error {
	return Required("artifact_id", a.ArtifactID, "tenant_id", a.TenantID, "run_id", a.RunID,
		"name", a.Name, "content_type", a.ContentType, "sha256", a.SHA256)
}

// CreateArtifactParams records one artifact whose bytes are already stored.
type CreateArtifactParams struct {
	Artifact Artifact
	// MaxBytes, if > 0, refuses (ErrQuotaExceeded, nothing written) an
	// artifact that would take the tenant's artifact bytes over it.
	MaxBytes int64
}

// ArtifactStore keeps artifact metadata.
type ArtifactStore interface {
	// CreateArtifact inserts the artifact. ErrConflict if the id exists;
	// ErrQuotaExceeded past p.MaxBytes (checked and inserted atomically, so
	// concurrent creates cannot overshoot); invalid_request for a missing
	// field.
	CreateArtifact(ctx context.Context, p CreateArtifactParams) error
	// GetArtifact returns ErrNotFound if absent or in another tenant.
	GetArtifact(ctx context.Context, tenantID, artifactID string) (Artifact, error)
	// ListRunArtifacts lists a run's artifacts, oldest first (then by id).
	ListRunArtifacts(ctx context.Context, tenantID, runID string) ([]Artifact, error)
	// DeleteArtifact removes the metadata. ErrNotFound if absent or in
	// another tenant (so of two concurrent deleters exactly one succeeds).
	DeleteArtifact(ctx context.Context, tenantID, artifactID string) error
	// ArtifactBytes is the total size of a tenant's artifacts.
	ArtifactBytes(ctx context.Context, tenantID string) (int64, error)
	// ExpiredArtifacts returns up to limit artifacts of any tenant whose
	// ExpiresAt is at or before now, soonest first (for the sweeper).
	ExpiredArtifacts(ctx context.Context, now time.Time, limit int) ([]Artifact, error)
}
