package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// lockKVUsage locks the tenant's kv_usage row (creating it at 0 bytes) and
// returns the tenant's stored bytes. Every put and delete takes this lock
// first, so the quota check and the write are atomic across replicas.
func lockKVUsage(ctx context.Context, tx pgx.Tx, tenantID string) (int64, error) {
	var used int64
	err := tx.QueryRow(ctx, `INSERT INTO kv_usage (tenant_id, bytes) VALUES ($1, 0)
		ON CONFLICT (tenant_id) DO UPDATE SET bytes = kv_usage.bytes RETURNING bytes`, tenantID).Scan(&used)
	return used, mapErr(err, "kv usage")
}

// KVPut stores value under (tenant, namespace, key). A tenant's usage is the
// sum of store.KVEntrySize over its entries; if maxBytes > 0 and the usage
// after the put would exceed it, nothing is written and a quota_exceeded
// error with details limit/used/requested is returned.
func (db *DB) KVPut(ctx context.Context, tenantID, namespace, key string, value []byte, maxBytes int64) error {
	value, size, err := sqlstore.PrepareKVPut(tenantID, namespace, key, value)
	if err != nil {
		return err
	}
	return db.Tx(ctx, func(tx pgx.Tx) error {
		used, err := lockKVUsage(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		var old int64
		err = tx.QueryRow(ctx, `SELECT size FROM kv WHERE tenant_id = $1 AND namespace = $2 AND kv_key = $3`,
			tenantID, namespace, key).Scan(&old)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return mapErr(err, "key "+key)
		}
		if maxBytes > 0 && used-old+size > maxBytes {
			return sqlstore.KVQuotaExceeded(maxBytes, used, size-old)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kv (tenant_id, namespace, kv_key, value, size) VALUES ($1,$2,$3,$4,$5)
			ON CONFLICT (tenant_id, namespace, kv_key) DO UPDATE SET value = excluded.value, size = excluded.size`,
			tenantID, namespace, key, value, size); err != nil {
			return mapErr(err, "key "+key)
		}
		_, err = tx.Exec(ctx, `UPDATE kv_usage SET bytes = $2 WHERE tenant_id = $1`, tenantID, used-old+size)
		return mapErr(err, "kv usage")
	})
}

// KVGet returns ErrNotFound if absent.
func (db *DB) KVGet(ctx context.Context, tenantID, namespace, key string) ([]byte, error) {
	var v []byte
	err := db.pool.QueryRow(ctx, `SELECT value FROM kv WHERE tenant_id = $1 AND namespace = $2 AND kv_key = $3`,
		tenantID, namespace, key).Scan(&v)
	return sqlstore.KVValue(v, mapErr(err, "key "+key))
}

// KVDelete removes a key; deleting a missing key is not an error.
func (db *DB) KVDelete(ctx context.Context, tenantID, namespace, key string) error {
	return db.Tx(ctx, func(tx pgx.Tx) error {
		used, err := lockKVUsage(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		var size int64
		err = tx.QueryRow(ctx, `DELETE FROM kv WHERE tenant_id = $1 AND namespace = $2 AND kv_key = $3 RETURNING size`,
			tenantID, namespace, key).Scan(&size)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return mapErr(err, "key "+key)
		}
		_, err = tx.Exec(ctx, `UPDATE kv_usage SET bytes = $2 WHERE tenant_id = $1`, tenantID, used-size)
		return mapErr(err, "kv usage")
	})
}

// KVUsage returns the tenant's total stored bytes.
func (db *DB) KVUsage(ctx context.Context, tenantID string) (int64, error) {
	var n int64
	err := db.pool.QueryRow(ctx, `SELECT coalesce(sum(bytes), 0) FROM kv_usage WHERE tenant_id = $1`, tenantID).Scan(&n)
	return n, mapErr(err, "kv")
}
