package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/nexixai/agentos/internal/errs"
)

// MemoryEntry is one document of a tenant's searchable memory
// (tool.memory.*, /v1/memory): a JSON value, the text indexed for keyword
// search and, optionally, the embedding of that text for vector search.
type MemoryEntry struct {
	TenantID  string
	Namespace string
	Key       string
	// Value is compact JSON.
	Value []byte
	// Text is what keyword search indexes (and what was embedded).
	Text string
	// Embedding is nil when the entry has none; EmbeddingModel names the
	// model that made it (vectors of different models are not compared).
	Embedding      []float32
	EmbeddingModel string
	UpdatedAt      time.Time
}

// Size is what the entry counts against the tenant's max_memory_bytes,
// the same quota as the key/value store: the KV size of the value plus
// the indexed text and four bytes per embedding dimension.
func (e MemoryEntry) Size() int64 {
	return KVEntrySize(e.Namespace, e.Key, e.Value) + int64(len(e.Text)) + 4*int64(len(e.Embedding))
}

// Validate checks an entry: tenant_id, namespace, key and a JSON value are
// required.
func (e MemoryEntry) Validate() error {
	if err := Required("tenant_id", e.TenantID, "namespace", e.Namespace, "key", e.Key); err != nil {
		return err
	}
	if !json.Valid(e.Value) {
		return errs.Field("value", "must be valid JSON")
	}
	return nil
}

// MemoryPutParams stores one entry. If MaxBytes > 0 and the tenant's total
// stored bytes (key/value store and memory together) after the put would
// exceed it, nothing is written and ErrQuotaExceeded is returned.
type MemoryPutParams struct {
	Entry    MemoryEntry
	MaxBytes int64
}

// MemorySearchParams is one ranked lookup in a namespace.
type MemorySearchParams struct {
	TenantID  string
	Namespace string
	// Terms are the keyword query's words (MemoryTerms): a document
	// matching any of them is a hit, ranked by the backend's full-text
	// relevance (SQLite FTS5 bm25, PostgreSQL ts_rank).
	Terms []string
	// Vector is the query embedding for vector search; Model is the model
	// that made it (only entries embedded by the same model are compared).
	Vector []float32
	Model  string
	// Filter keeps only entries whose JSON value has each of these
	// top-level fields equal to the given JSON value (MatchFilter).
	Filter map[string]json.RawMessage
	// Limit is how many hits to return at most (default 10, at most 100).
	Limit int
}

// MemoryHit is one search result, best first. Score is higher for better
// hits; its scale depends on the search (bm25, ts_rank, cosine).
type MemoryHit struct {
	Key   string
	Score float64
	Value []byte
}

// MemoryStore is tenant- and namespace-scoped searchable memory.
type MemoryStore interface {
	// MemoryPut creates or replaces an entry (UpdatedAt is set by the
	// store). ErrQuotaExceeded past MaxBytes; invalid_request for a
	// missing field.
	MemoryPut(ctx context.Context, p MemoryPutParams) error
	// MemoryGet returns ErrNotFound if absent or in another tenant.
	MemoryGet(ctx context.Context, tenantID, namespace, key string) (MemoryEntry, error)
	// MemoryDelete removes an entry; a missing one is not an error.
	MemoryDelete(ctx context.Context, tenantID, namespace, key string) error
	// MemoryKeywordSearch ranks the namespace's entries matching any of
	// p.Terms by full-text relevance. No terms: no hits.
	MemoryKeywordSearch(ctx context.Context, p MemorySearchParams) ([]MemoryHit, error)
	// MemoryVectorSearch ranks the namespace's entries embedded by p.Model
	// by cosine similarity to p.Vector (an exact scan).
	MemoryVectorSearch(ctx context.Context, p MemorySearchParams) ([]MemoryHit, error)
}

// MemoryTerms splits a keyword query into lower-cased words of letters and
// digits: what both backends' full-text syntaxes accept as plain terms, so
// no query can inject operators.
func MemoryTerms(query string) []string {
	words := strings.FieldsFunc(strings.ToLower(query), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r)
	})
	seen := map[string]bool{}
	out := words[:0]
	for _, w := range words {
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

// MemorySearchLimit is p.Limit bounded: default 10, at most 100.
func MemorySearchLimit(n int) int {
	switch {
	case n <= 0:
		return 10
	case n > 100:
		return 100
	}
	return n
}

// MatchFilter reports whether the JSON object value has every field of
// filter equal to its JSON value (compared after compaction, so spacing
// does not matter). An empty filter matches everything; a value that is
// not an object matches only an empty filter.
func MatchFilter(value []byte, filter map[string]json.RawMessage) bool {
	if len(filter) == 0 {
		return true
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(value, &obj) != nil {
		return false
	}
	for k, want := range filter {
		got, ok := obj[k]
		if !ok || !jsonEqual(got, want) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b json.RawMessage) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// EncodeVector packs a vector as little-endian float32s (how both
// backends store embeddings).
func EncodeVector(v []float32) []byte {
	if v == nil {
		return nil
	}
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// DecodeVector unpacks EncodeVector's bytes; nil for none.
func DecodeVector(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// Cosine is the cosine similarity of a and b; 0 when their lengths differ
// or either is zero.
func Cosine(a, b []float32) float64 {
	if len(a) != len(b) || len(a) == 0 {
		return 0
	}
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// TopHits keeps the best limit hits, ordered by score then key (a stable
// order for ties).
func TopHits(hits []MemoryHit, limit int) []MemoryHit {
	sort.SliceStable(hits, func(i, j int) bool {
		if hits[i].Score != hits[j].Score {
			return hits[i].Score > hits[j].Score
		}
		return hits[i].Key < hits[j].Key
	})
	if len(hits) > limit {
		hits = hits[:limit]
	}
	return hits
}
