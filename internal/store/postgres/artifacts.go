package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// CreateArtifact checks the quota and inserts in one transaction, holding
// a per-tenant advisory lock so that concurrent creates of one tenant
// (on any replica) are checked one after the other.
func (db *DB) CreateArtifact(ctx context.Context, p store.CreateArtifactParams) error {
	a := p.Artifact
	if err := a.Validate(); err != nil {
		return err
	}
	return db.Tx(ctx, func(tx pgx.Tx) error {
		if p.MaxBytes > 0 {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('artifacts/' || $1, 0))`, a.TenantID); err != nil {
				return mapErr(err, "artifacts")
			}
			var used int64
			if err := tx.QueryRow(ctx, `SELECT coalesce(sum(size), 0) FROM artifacts WHERE tenant_id = $1`,
				a.TenantID).Scan(&used); err != nil {
				return mapErr(err, "artifacts")
			}
			if used+a.Size > p.MaxBytes {
				return sqlstore.ArtifactQuotaExceeded(p.MaxBytes, used, a.Size)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO artifacts (tenant_id, artifact_id, run_id, step_id, tool_call_id,
			name, content_type, size, sha256, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
			a.TenantID, a.ArtifactID, a.RunID, a.StepID, a.ToolCallID, a.Name, a.ContentType, a.Size, a.SHA256,
			ts(a.CreatedAt), tsPtr(a.ExpiresAt))
		return mapErr(err, "artifact "+a.ArtifactID)
	})
}

const artifactCols = `tenant_id, artifact_id, run_id, step_id, tool_call_id, name, content_type, size, sha256, created_at, expires_at`

func scanArtifact(row pgx.Row) (store.Artifact, error) {
	var a store.Artifact
	var created, expires *time.Time
	err := row.Scan(&a.TenantID, &a.ArtifactID, &a.RunID, &a.StepID, &a.ToolCallID, &a.Name, &a.ContentType,
		&a.Size, &a.SHA256, &created, &expires)
	a.CreatedAt, a.ExpiresAt = fromTS(created), fromTSPtr(expires)
	return a, err
}

func (db *DB) artifacts(ctx context.Context, q string, args ...any) ([]store.Artifact, error) {
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err, "artifacts")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Artifact, error) { return scanArtifact(r) })
	if out == nil {
		out = []store.Artifact{}
	}
	return out, mapErr(err, "artifacts")
}

// GetArtifact returns ErrNotFound if absent or in another tenant.
func (db *DB) GetArtifact(ctx context.Context, tenantID, artifactID string) (store.Artifact, error) {
	a, err := scanArtifact(db.pool.QueryRow(ctx, `SELECT `+artifactCols+` FROM artifacts
		WHERE tenant_id = $1 AND artifact_id = $2`, tenantID, artifactID))
	if err != nil {
		return store.Artifact{}, mapErr(err, "artifact "+artifactID)
	}
	return a, nil
}

// ListRunArtifacts lists a run's artifacts, oldest first.
func (db *DB) ListRunArtifacts(ctx context.Context, tenantID, runID string) ([]store.Artifact, error) {
	return db.artifacts(ctx, `SELECT `+artifactCols+` FROM artifacts WHERE tenant_id = $1 AND run_id = $2
		ORDER BY created_at, artifact_id`, tenantID, runID)
}

// DeleteArtifact removes the metadata; ErrNotFound if absent.
func (db *DB) DeleteArtifact(ctx context.Context, tenantID, artifactID string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM artifacts WHERE tenant_id = $1 AND artifact_id = $2`, tenantID, artifactID)
	return mustAffect(tag, err, "artifact "+artifactID)
}

// ArtifactBytes sums the tenant's artifact sizes.
func (db *DB) ArtifactBytes(ctx context.Context, tenantID string) (int64, error) {
	var n int64
	err := db.pool.QueryRow(ctx, `SELECT coalesce(sum(size), 0) FROM artifacts WHERE tenant_id = $1`, tenantID).Scan(&n)
	return n, mapErr(err, "artifacts")
}

// ExpiredArtifacts returns artifacts of any tenant expired at now.
func (db *DB) ExpiredArtifacts(ctx context.Context, now time.Time, limit int) ([]store.Artifact, error) {
	if limit <= 0 {
		limit = 100
	}
	return db.artifacts(ctx, `SELECT `+artifactCols+` FROM artifacts WHERE expires_at IS NOT NULL AND expires_at <= $1
		ORDER BY expires_at, tenant_id, artifact_id LIMIT $2`, ts(now), limit)
}
