package sqlite

import (
	"context"

	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// KVPut stores value under (tenant, namespace, key). A tenant's usage is the
// sum of store.KVEntrySize over its entries; if maxBytes > 0 and the usage
// after the put would exceed it, nothing is written and a quota_exceeded
// error with details limit/used/requested is returned.
func (db *DB) KVPut(ctx context.Context, tenantID, namespace, key string, value []byte, maxBytes int64) error {
	value, size, err := sqlstore.PrepareKVPut(tenantID, namespace, key, value)
	if err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		if maxBytes > 0 {
			var used, old int64
			// Searchable memory (memory.go) shares the quota.
			if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(size), 0) +
				(SELECT coalesce(sum(size), 0) FROM memory WHERE tenant_id = ?3),
				coalesce(sum(CASE WHEN namespace = ?1 AND kv_key = ?2 THEN size ELSE 0 END), 0)
				FROM kv WHERE tenant_id = ?3`, namespace, key, tenantID).Scan(&used, &old); err != nil {
				return err
			}
			if used-old+size > maxBytes {
				return sqlstore.KVQuotaExceeded(maxBytes, used, size-old)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO kv (tenant_id, namespace, kv_key, value, size) VALUES (?,?,?,?,?)
			ON CONFLICT (tenant_id, namespace, kv_key) DO UPDATE SET value = excluded.value, size = excluded.size`,
			tenantID, namespace, key, value, size)
		return mapErr(err, "key "+key)
	})
}

// KVGet returns ErrNotFound if absent.
func (db *DB) KVGet(ctx context.Context, tenantID, namespace, key string) ([]byte, error) {
	var v []byte
	err := db.queryRow(ctx, `SELECT value FROM kv WHERE tenant_id = ? AND namespace = ? AND kv_key = ?`,
		tenantID, namespace, key).Scan(&v)
	return sqlstore.KVValue(v, mapErr(err, "key "+key))
}

// KVDelete removes a key; deleting a missing key is not an error.
func (db *DB) KVDelete(ctx context.Context, tenantID, namespace, key string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM kv WHERE tenant_id = ? AND namespace = ? AND kv_key = ?`,
			tenantID, namespace, key)
		return err
	})
}

// KVUsage returns the tenant's total stored bytes (kv and searchable memory).
func (db *DB) KVUsage(ctx context.Context, tenantID string) (int64, error) {
	var n int64
	err := db.queryRow(ctx, `SELECT (SELECT coalesce(sum(size), 0) FROM kv WHERE tenant_id = ?1) +
		(SELECT coalesce(sum(size), 0) FROM memory WHERE tenant_id = ?1)`, tenantID).Scan(&n)
	return n, mapErr(err, "kv")
}
