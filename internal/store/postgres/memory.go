package postgres

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// MemoryPut creates or replaces an entry. It takes the tenant's kv_usage
// lock (kv.go), so the quota, shared with the key/value store, is exact
// across replicas.
func (db *DB) MemoryPut(ctx context.Context, p store.MemoryPutParams) error {
	e := p.Entry
	if err := e.Validate(); err != nil {
		return err
	}
	size := e.Size()
	return db.Tx(ctx, func(tx pgx.Tx) error {
		used, err := lockKVUsage(ctx, tx, e.TenantID)
		if err != nil {
			return err
		}
		var old int64
		err = tx.QueryRow(ctx, `SELECT size FROM memory WHERE tenant_id = $1 AND namespace = $2 AND mem_key = $3`,
			e.TenantID, e.Namespace, e.Key).Scan(&old)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return mapErr(err, "memory "+e.Key)
		}
		if p.MaxBytes > 0 && used-old+size > p.MaxBytes {
			return sqlstore.KVQuotaExceeded(p.MaxBytes, used, size-old)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO memory (tenant_id, namespace, mem_key, value, body, embedding,
			embedding_model, size, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
			ON CONFLICT (tenant_id, namespace, mem_key) DO UPDATE SET value = excluded.value, body = excluded.body,
			embedding = excluded.embedding, embedding_model = excluded.embedding_model, size = excluded.size,
			updated_at = excluded.updated_at`,
			e.TenantID, e.Namespace, e.Key, e.Value, e.Text, store.EncodeVector(e.Embedding), e.EmbeddingModel,
			size, db.now()); err != nil {
			return mapErr(err, "memory "+e.Key)
		}
		_, err = tx.Exec(ctx, `UPDATE kv_usage SET bytes = $2 WHERE tenant_id = $1`, e.TenantID, used-old+size)
		return mapErr(err, "kv usage")
	})
}

// MemoryGet returns ErrNotFound if absent or in another tenant.
func (db *DB) MemoryGet(ctx context.Context, tenantID, namespace, key string) (store.MemoryEntry, error) {
	e := store.MemoryEntry{TenantID: tenantID, Namespace: namespace, Key: key}
	var vec []byte
	err := db.pool.QueryRow(ctx, `SELECT value, body, embedding, embedding_model, updated_at FROM memory
		WHERE tenant_id = $1 AND namespace = $2 AND mem_key = $3`, tenantID, namespace, key).
		Scan(&e.Value, &e.Text, &vec, &e.EmbeddingModel, &e.UpdatedAt)
	if err != nil {
		return store.MemoryEntry{}, mapErr(err, "memory "+key)
	}
	e.Embedding, e.UpdatedAt = store.DecodeVector(vec), sqlstore.UTC(e.UpdatedAt)
	return e, nil
}

// MemoryDelete removes an entry; a missing one is not an error.
func (db *DB) MemoryDelete(ctx context.Context, tenantID, namespace, key string) error {
	return db.Tx(ctx, func(tx pgx.Tx) error {
		used, err := lockKVUsage(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		var size int64
		err = tx.QueryRow(ctx, `DELETE FROM memory WHERE tenant_id = $1 AND namespace = $2 AND mem_key = $3 RETURNING size`,
			tenantID, namespace, key).Scan(&size)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return mapErr(err, "memory "+key)
		}
		_, err = tx.Exec(ctx, `UPDATE kv_usage SET bytes = $2 WHERE tenant_id = $1`, tenantID, used-size)
		return mapErr(err, "kv usage")
	})
}

// MemoryKeywordSearch ranks by ts_rank over the english tsvector (GIN
// indexed). The terms are OR-ed plain lexemes, so no query text is
// tsquery syntax; terms that are all stop words match nothing.
func (db *DB) MemoryKeywordSearch(ctx context.Context, p store.MemorySearchParams) ([]store.MemoryHit, error) {
	if len(p.Terms) == 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT mem_key, ts_rank(tsv, q)::float8 AS rank, value
		FROM memory, to_tsquery('english', $3) q
		WHERE tenant_id = $1 AND namespace = $2 AND tsv @@ q
		ORDER BY rank DESC, mem_key`, p.TenantID, p.Namespace, strings.Join(p.Terms, " | "))
	if err != nil {
		return nil, mapErr(err, "memory search")
	}
	return collectHits(rows, p, false)
}

// MemoryVectorSearch scans the namespace's embeddings of p.Model.
func (db *DB) MemoryVectorSearch(ctx context.Context, p store.MemorySearchParams) ([]store.MemoryHit, error) {
	rows, err := db.pool.Query(ctx, `SELECT mem_key, embedding, value FROM memory
		WHERE tenant_id = $1 AND namespace = $2 AND embedding_model = $3 AND embedding IS NOT NULL`,
		p.TenantID, p.Namespace, p.Model)
	if err != nil {
		return nil, mapErr(err, "memory search")
	}
	return collectHits(rows, p, true)
}

// collectHits reads (key, score or embedding, value) rows: ranked rows
// stop at the limit; vector rows are scored here and all compared.
func collectHits(rows pgx.Rows, p store.MemorySearchParams, vector bool) ([]store.MemoryHit, error) {
	defer rows.Close()
	limit := store.MemorySearchLimit(p.Limit)
	var hits []store.MemoryHit
	for rows.Next() {
		var h store.MemoryHit
		if vector {
			var vec []byte
			if err := rows.Scan(&h.Key, &vec, &h.Value); err != nil {
				return nil, mapErr(err, "memory search")
			}
			h.Score = store.Cosine(p.Vector, store.DecodeVector(vec))
		} else if err := rows.Scan(&h.Key, &h.Score, &h.Value); err != nil {
			return nil, mapErr(err, "memory search")
		}
		if !store.MatchFilter(h.Value, p.Filter) {
			continue
		}
		hits = append(hits, h)
		if !vector && len(hits) == limit {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(err, "memory search")
	}
	return store.TopHits(hits, limit), nil
}
