package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// memoryUsed is the tenant's stored bytes (kv and memory together) and
// the size of the (namespace, key) memory entry a put would replace.
const memoryUsed = `SELECT
	(SELECT coalesce(sum(size), 0) FROM kv WHERE tenant_id = ?1) +
	(SELECT coalesce(sum(size), 0) FROM memory WHERE tenant_id = ?1),
	(SELECT coalesce(sum(size), 0) FROM memory WHERE tenant_id = ?1 AND namespace = ?2 AND mem_key = ?3)`

// MemoryPut creates or replaces an entry and its keyword index row in one
// write transaction (SQLite has one writer, so the quota check is exact).
func (db *DB) MemoryPut(ctx context.Context, p store.MemoryPutParams) error {
	e := p.Entry
	if err := e.Validate(); err != nil {
		return err
	}
	size := e.Size()
	return db.WriteTx(ctx, func(tx *Tx) error {
		var used, old int64
		if err := tx.QueryRowContext(ctx, memoryUsed, e.TenantID, e.Namespace, e.Key).Scan(&used, &old); err != nil {
			return mapErr(err, "memory")
		}
		if p.MaxBytes > 0 && used-old+size > p.MaxBytes {
			return sqlstore.KVQuotaExceeded(p.MaxBytes, used, size-old)
		}
		if err := deleteMemory(ctx, tx, e.TenantID, e.Namespace, e.Key); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO memory (tenant_id, namespace, mem_key, value, body, embedding,
			embedding_model, size, updated_at) VALUES (?,?,?,?,?,?,?,?,?)`,
			e.TenantID, e.Namespace, e.Key, e.Value, e.Text, store.EncodeVector(e.Embedding), e.EmbeddingModel,
			size, micros(db.now()))
		if err != nil {
			return mapErr(err, "memory "+e.Key)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return mapErr(err, "memory "+e.Key)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO memory_fts (rowid, body) VALUES (?, ?)`, id, e.Text)
		return mapErr(err, "memory "+e.Key)
	})
}

// deleteMemory removes an entry and its index row.
func deleteMemory(ctx context.Context, tx *Tx, tenantID, namespace, key string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM memory_fts WHERE rowid IN
		(SELECT rowid FROM memory WHERE tenant_id = ? AND namespace = ? AND mem_key = ?)`, tenantID, namespace, key)
	if err != nil {
		return mapErr(err, "memory "+key)
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM memory WHERE tenant_id = ? AND namespace = ? AND mem_key = ?`,
		tenantID, namespace, key)
	return mapErr(err, "memory "+key)
}

// MemoryGet returns ErrNotFound if absent or in another tenant.
func (db *DB) MemoryGet(ctx context.Context, tenantID, namespace, key string) (store.MemoryEntry, error) {
	e := store.MemoryEntry{TenantID: tenantID, Namespace: namespace, Key: key}
	var vec []byte
	var updated sql.NullInt64
	err := db.queryRow(ctx, `SELECT value, body, embedding, embedding_model, updated_at FROM memory
		WHERE tenant_id = ? AND namespace = ? AND mem_key = ?`, tenantID, namespace, key).
		Scan(&e.Value, &e.Text, &vec, &e.EmbeddingModel, &updated)
	if err != nil {
		return store.MemoryEntry{}, mapErr(err, "memory "+key)
	}
	e.Embedding, e.UpdatedAt = store.DecodeVector(vec), fromMicros(updated)
	return e, nil
}

// MemoryDelete removes an entry; a missing one is not an error.
func (db *DB) MemoryDelete(ctx context.Context, tenantID, namespace, key string) error {
	return db.WriteTx(ctx, func(tx *Tx) error { return deleteMemory(ctx, tx, tenantID, namespace, key) })
}

// MemoryKeywordSearch ranks by FTS5's bm25 (negated: higher is better).
// The terms are quoted and OR-ed, so no query text is FTS5 syntax.
func (db *DB) MemoryKeywordSearch(ctx context.Context, p store.MemorySearchParams) ([]store.MemoryHit, error) {
	if len(p.Terms) == 0 {
		return nil, nil
	}
	quoted := make([]string, len(p.Terms))
	for i, t := range p.Terms {
		quoted[i] = `"` + strings.ReplaceAll(t, `"`, `""`) + `"`
	}
	rows, err := db.query(ctx, `SELECT m.mem_key, -bm25(memory_fts), m.value FROM memory_fts
		JOIN memory m ON m.rowid = memory_fts.rowid
		WHERE memory_fts MATCH ? AND m.tenant_id = ? AND m.namespace = ?
		ORDER BY bm25(memory_fts), m.mem_key`, strings.Join(quoted, " OR "), p.TenantID, p.Namespace)
	if err != nil {
		return nil, mapErr(err, "memory search")
	}
	return collectHits(rows, p, false)
}

// MemoryVectorSearch scans the namespace's embeddings of p.Model.
func (db *DB) MemoryVectorSearch(ctx context.Context, p store.MemorySearchParams) ([]store.MemoryHit, error) {
	rows, err := db.query(ctx, `SELECT mem_key, embedding, value FROM memory
		WHERE tenant_id = ? AND namespace = ? AND embedding_model = ? AND embedding IS NOT NULL`,
		p.TenantID, p.Namespace, p.Model)
	if err != nil {
		return nil, mapErr(err, "memory search")
	}
	return collectHits(rows, p, true)
}

// collectHits reads (key, score or embedding, value) rows: ranked rows
// stop at the limit; vector rows are scored here and all compared.
func collectHits(rows *sql.Rows, p store.MemorySearchParams, vector bool) ([]store.MemoryHit, error) {
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
