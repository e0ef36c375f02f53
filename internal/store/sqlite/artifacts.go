package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// CreateArtifact checks the quota and inserts in one write transaction
// (SQLite has one writer, so the check is exact).
func (db *DB) CreateArtifact(ctx context.Context, p store.CreateArtifactParams) error {
	a := p.Artifact
	if err := a.Validate(); err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		if p.MaxBytes > 0 {
			var used int64
			if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(size), 0) FROM artifacts WHERE tenant_id = ?`,
				a.TenantID).Scan(&used); err != nil {
				return mapErr(err, "artifacts")
			}
			if used+a.Size > p.MaxBytes {
				return sqlstore.ArtifactQuotaExceeded(p.MaxBytes, used, a.Size)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO artifacts (tenant_id, artifact_id, run_id, step_id, tool_call_id,
			name, content_type, size, sha256, created_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
			a.TenantID, a.ArtifactID, a.RunID, a.StepID, a.ToolCallID, a.Name, a.ContentType, a.Size, a.SHA256,
			micros(a.CreatedAt), microsPtr(a.ExpiresAt))
		return mapErr(err, "artifact "+a.ArtifactID)
	})
}

const artifactCols = `tenant_id, artifact_id, run_id, step_id, tool_call_id, name, content_type, size, sha256, created_at, expires_at`

func scanArtifact(row interface{ Scan(...any) error }) (store.Artifact, error) {
	var a store.Artifact
	var created, expires sql.NullInt64
	err := row.Scan(&a.TenantID, &a.ArtifactID, &a.RunID, &a.StepID, &a.ToolCallID, &a.Name, &a.ContentType,
		&a.Size, &a.SHA256, &created, &expires)
	a.CreatedAt, a.ExpiresAt = fromMicros(created), fromMicrosPtr(expires)
	return a, err
}

func (db *DB) artifacts(ctx context.Context, q string, args ...any) ([]store.Artifact, error) {
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err, "artifacts")
	}
	defer rows.Close()
	out := []store.Artifact{}
	for rows.Next() {
		a, err := scanArtifact(rows)
		if err != nil {
			return nil, mapErr(err, "artifacts")
		}
		out = append(out, a)
	}
	return out, mapErr(rows.Err(), "artifacts")
}

// GetArtifact returns ErrNotFound if absent or in another tenant.
func (db *DB) GetArtifact(ctx context.Context, tenantID, artifactID string) (store.Artifact, error) {
	a, err := scanArtifact(db.queryRow(ctx, `SELECT `+artifactCols+` FROM artifacts WHERE tenant_id = ? AND artifact_id = ?`,
		tenantID, artifactID))
	if err != nil {
		return store.Artifact{}, mapErr(err, "artifact "+artifactID)
	}
	return a, nil
}

// ListRunArtifacts lists a run's artifacts, oldest first.
func (db *DB) ListRunArtifacts(ctx context.Context, tenantID, runID string) ([]store.Artifact, error) {
	return db.artifacts(ctx, `SELECT `+artifactCols+` FROM artifacts WHERE tenant_id = ? AND run_id = ?
		ORDER BY created_at, artifact_id`, tenantID, runID)
}

// DeleteArtifact removes the metadata; ErrNotFound if absent.
func (db *DB) DeleteArtifact(ctx context.Context, tenantID, artifactID string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM artifacts WHERE tenant_id = ? AND artifact_id = ?`, tenantID, artifactID)
		if err != nil {
			return mapErr(err, "artifact "+artifactID)
		}
		return mustAffect(res, "artifact "+artifactID)
	})
}

// ArtifactBytes sums the tenant's artifact sizes.
func (db *DB) ArtifactBytes(ctx context.Context, tenantID string) (int64, error) {
	var n int64
	err := db.queryRow(ctx, `SELECT coalesce(sum(size), 0) FROM artifacts WHERE tenant_id = ?`, tenantID).Scan(&n)
	return n, mapErr(err, "artifacts")
}

// ExpiredArtifacts returns artifacts of any tenant expired at now.
func (db *DB) ExpiredArtifacts(ctx context.Context, now time.Time, limit int) ([]store.Artifact, error) {
	if limit <= 0 {
		limit = 100
	}
	return db.artifacts(ctx, `SELECT `+artifactCols+` FROM artifacts WHERE expires_at IS NOT NULL AND expires_at <= ?
		ORDER BY expires_at, tenant_id, artifact_id LIMIT ?`, now.UnixMicro(), limit)
}
