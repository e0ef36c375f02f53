package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// CreateWorker inserts w; ErrConflict if the id (or its key) exists.
func (db *DB) CreateWorker(ctx context.Context, w store.Worker) error {
	labels, tenants, err := sqlstore.EncodeWorker(w)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO workers (`+sqlstore.WorkerCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
		w.WorkerID, labels, w.PublicKey, tenants, w.Status, ts(w.CreatedAt), ts(w.UpdatedAt), tsPtr(w.RevokedAt))
	return mapErr(err, "worker "+w.WorkerID)
}

func scanWorker(row pgx.Row) (store.Worker, error) {
	var w store.Worker
	var labels, tenants string
	var created, updated, revoked *time.Time
	if err := row.Scan(&w.WorkerID, &labels, &w.PublicKey, &tenants, &w.Status, &created, &updated, &revoked); err != nil {
		return w, err
	}
	w.CreatedAt, w.UpdatedAt, w.RevokedAt = fromTS(created), fromTS(updated), fromTSPtr(revoked)
	return w, sqlstore.DecodeWorker(&w, []byte(labels), []byte(tenants))
}

// GetWorker returns ErrNotFound if absent.
func (db *DB) GetWorker(ctx context.Context, workerID string) (store.Worker, error) {
	w, err := scanWorker(db.pool.QueryRow(ctx, `SELECT `+sqlstore.WorkerCols+` FROM workers WHERE worker_id = $1`, workerID))
	return w, mapErr(err, "worker "+workerID)
}

// ListWorkers lists every worker by id.
func (db *DB) ListWorkers(ctx context.Context) ([]store.Worker, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+sqlstore.WorkerCols+` FROM workers ORDER BY worker_id`)
	if err != nil {
		return nil, mapErr(err, "workers")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Worker, error) { return scanWorker(r) })
	return out, mapErr(err, "workers")
}

// RevokeWorker marks the worker revoked (the first revoked_at is kept).
func (db *DB) RevokeWorker(ctx context.Context, workerID string, at time.Time) (store.Worker, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE workers SET status = $1, updated_at = CASE WHEN status = $1 THEN updated_at ELSE $2 END,
		revoked_at = COALESCE(revoked_at, $2) WHERE worker_id = $3`, store.WorkerRevoked, ts(at), workerID)
	if err := mustAffect(tag, err, "worker "+workerID); err != nil {
		return store.Worker{}, err
	}
	return db.GetWorker(ctx, workerID)
}
