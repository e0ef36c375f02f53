package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// CreateWorker inserts w; ErrConflict if the id (or its key) exists.
func (db *DB) CreateWorker(ctx context.Context, w store.Worker) error {
	labels, tenants, err := sqlstore.EncodeWorker(w)
	if err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO workers (`+sqlstore.WorkerCols+`) VALUES (?,?,?,?,?,?,?,?)`,
			w.WorkerID, labels, w.PublicKey, tenants, w.Status, micros(w.CreatedAt), micros(w.UpdatedAt), microsPtr(w.RevokedAt))
		return mapErr(err, "worker "+w.WorkerID)
	})
}

func scanWorker(row interface{ Scan(...any) error }) (store.Worker, error) {
	var w store.Worker
	var labels, tenants string
	var created, updated, revoked sql.NullInt64
	if err := row.Scan(&w.WorkerID, &labels, &w.PublicKey, &tenants, &w.Status, &created, &updated, &revoked); err != nil {
		return w, err
	}
	w.CreatedAt, w.UpdatedAt, w.RevokedAt = fromMicros(created), fromMicros(updated), fromMicrosPtr(revoked)
	return w, sqlstore.DecodeWorker(&w, []byte(labels), []byte(tenants))
}

// GetWorker returns ErrNotFound if absent.
func (db *DB) GetWorker(ctx context.Context, workerID string) (store.Worker, error) {
	w, err := scanWorker(db.queryRow(ctx, `SELECT `+sqlstore.WorkerCols+` FROM workers WHERE worker_id = ?`, workerID))
	return w, mapErr(err, "worker "+workerID)
}

// ListWorkers lists every worker by id.
func (db *DB) ListWorkers(ctx context.Context) ([]store.Worker, error) {
	rows, err := db.query(ctx, `SELECT `+sqlstore.WorkerCols+` FROM workers ORDER BY worker_id`)
	if err != nil {
		return nil, mapErr(err, "workers")
	}
	defer rows.Close()
	var out []store.Worker
	for rows.Next() {
		w, err := scanWorker(rows)
		if err != nil {
			return nil, mapErr(err, "workers")
		}
		out = append(out, w)
	}
	return out, mapErr(rows.Err(), "workers")
}

// RevokeWorker marks the worker revoked (the first revoked_at is kept).
func (db *DB) RevokeWorker(ctx context.Context, workerID string, at time.Time) (store.Worker, error) {
	err := db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE workers SET status = ?, updated_at = CASE WHEN status = ? THEN updated_at ELSE ? END,
			revoked_at = COALESCE(revoked_at, ?) WHERE worker_id = ?`,
			store.WorkerRevoked, store.WorkerRevoked, micros(at), micros(at), workerID)
		if err != nil {
			return mapErr(err, "worker "+workerID)
		}
		return mustAffect(res, "worker "+workerID)
	})
	if err != nil {
		return store.Worker{}, err
	}
	return db.GetWorker(ctx, workerID)
}
