// Package memory is searchable tenant memory: JSON documents under
// (tenant, namespace, key), found again by keyword (the store's full-text
// index), by vector (embeddings made through model-policy, so governed and
// metered like any model call) or by both fused with reciprocal-rank
// fusion. The REST API (/v1/memory) and the tool.memory.* tools share it.
package memory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"
	"unicode"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
)

// Search modes.
const (
	ModeKeyword = "keyword"
	ModeVector  = "vector"
	ModeHybrid  = "hybrid"
)

// Limits.
const (
	MaxNamespaceLen = 64
	MaxKeyLen       = 256
	MaxValueBytes   = 1 << 20
	MaxQueryLen     = 4096
	DefaultTopK     = 10
	MaxTopK         = 100
	// RRFK is the k of reciprocal-rank fusion: score = Σ 1/(k + rank).
	// 60 is the constant of Cormack et al. (2009), the usual choice.
	RRFK = 60
	// DefaultEmbedModel is the model_ref embeddings are asked for.
	DefaultEmbedModel = "tier:embed"
)

// Embedder makes embeddings on behalf of a caller (modelport.Port).
type Embedder interface {
	Embed(ctx context.Context, ac auth.Context, req modelport.EmbedRequest) (modelport.EmbedResponse, error)
}

// Service is searchable memory.
type Service struct {
	Store store.MemoryStore
	Model Embedder
	// EmbedModel is the model_ref of embeddings (default tier:embed).
	EmbedModel string
	// Quota returns a tenant's max_memory_bytes (0 = unlimited); nil:
	// unlimited.
	Quota func(ctx context.Context, tenantID string) (int64, error)
}

// Caller is who a memory operation runs for: the Auth Context passed to
// model-policy, the tenant, and the agent and run usage is attributed to
// (both optional).
type Caller struct {
	Auth     auth.Context
	TenantID string
	AgentID  string
	RunID    string
}

// Entry is a stored document as the API shows it.
type Entry struct {
	Namespace string          `json:"namespace"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	// Bytes is what the entry counts against max_memory_bytes.
	Bytes     int64     `json:"bytes"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Query is a search request (POST /v1/memory/{namespace}:search).
type Query struct {
	Query  string                     `json:"query"`
	TopK   int                        `json:"top_k,omitempty"`
	Mode   string                     `json:"mode,omitempty"`
	Filter map[string]json.RawMessage `json:"filter,omitempty"`
}

// Result is one hit, best first.
type Result struct {
	Key   string          `json:"key"`
	Score float64         `json:"score"`
	Value json.RawMessage `json:"value"`
}

func (s *Service) embedModel() string {
	if s.EmbedModel != "" {
		return s.EmbedModel
	}
	return DefaultEmbedModel
}

// CheckName validates a namespace or key: 1..maxLen characters of valid
// text without control characters (invalid_request naming field).
func CheckName(field, v string, maxLen int) error {
	n := 0
	for _, r := range v {
		n++
		if r == unicode.ReplacementChar || unicode.IsControl(r) {
			return errs.Field(field, "must be valid text without control characters")
		}
	}
	switch {
	case n == 0:
		return errs.Field(field, "must not be empty")
	case n > maxLen:
		return errs.Field(field, "must be at most %d characters", maxLen)
	}
	return nil
}

func checkNames(ns, key string) error {
	if err := CheckName("namespace", ns, MaxNamespaceLen); err != nil {
		return err
	}
	return CheckName("key", key, MaxKeyLen)
}

// IndexedText is what a value is indexed and embedded by: its "text"
// field when that is a non-empty string, else the whole value's compact
// JSON.
func IndexedText(value []byte) string {
	var obj struct {
		Text *string `json:"text"`
	}
	if json.Unmarshal(value, &obj) == nil && obj.Text != nil && *obj.Text != "" {
		return *obj.Text
	}
	return string(value)
}

// embed returns the embedding of each text and the model that made them.
func (s *Service) embed(ctx context.Context, c Caller, texts ...string) ([][]float32, string, error) {
	resp, err := s.Model.Embed(ctx, c.Auth, modelport.EmbedRequest{RequestID: ids.New("req_"), Operation: "embed",
		ModelRef: s.embedModel(), Input: modelport.EmbedInput{Texts: texts}, AgentID: c.AgentID, RunID: c.RunID})
	if err != nil {
		return nil, "", err
	}
	out := make([][]float32, len(texts))
	for _, e := range resp.Output.Embeddings {
		if e.Index >= 0 && e.Index < len(out) {
			out[e.Index] = e.Vector
		}
	}
	for i := range out {
		if len(out[i]) == 0 {
			return nil, "", errs.E(errs.DependencyUnavailable, "model-policy returned no embedding for text %d", i)
		}
	}
	// Route.Model is the catalogue id ("builtin/embed-small"): vectors are
	// compared only with vectors of the same model.
	model := resp.Route.Model
	if model == "" {
		model = s.embedModel()
	}
	return out, model, nil
}

// Put stores value under (namespace, key), indexing IndexedText(value)
// for keyword search and embedding it for vector search. A put past the
// tenant's max_memory_bytes is quota_exceeded and writes nothing.
func (s *Service) Put(ctx context.Context, c Caller, ns, key string, value json.RawMessage) (Entry, error) {
	if err := checkNames(ns, key); err != nil {
		return Entry{}, err
	}
	var compact bytes.Buffer
	if len(bytes.TrimSpace(value)) == 0 {
		return Entry{}, errs.Field("value", "is required")
	}
	if err := json.Compact(&compact, value); err != nil {
		return Entry{}, errs.Field("value", "is not valid JSON")
	}
	if compact.Len() > MaxValueBytes {
		return Entry{}, errs.Field("value", "is %d bytes, larger than the limit of %d", compact.Len(), MaxValueBytes)
	}
	text := IndexedText(compact.Bytes())
	vecs, model, err := s.embed(ctx, c, text)
	if err != nil {
		return Entry{}, err
	}
	var maxBytes int64
	if s.Quota != nil {
		if maxBytes, err = s.Quota(ctx, c.TenantID); err != nil {
			return Entry{}, err
		}
	}
	e := store.MemoryEntry{TenantID: c.TenantID, Namespace: ns, Key: key, Value: compact.Bytes(), Text: text,
		Embedding: vecs[0], EmbeddingModel: model}
	if err := s.Store.MemoryPut(ctx, store.MemoryPutParams{Entry: e, MaxBytes: maxBytes}); err != nil {
		if errors.Is(err, errs.ErrQuotaExceeded) {
			x := errs.As(err)
			return Entry{}, errs.E(errs.QuotaExceeded, "max_memory_bytes: storing %d bytes would exceed the tenant's memory quota of %d bytes",
				e.Size(), maxBytes).WithDetails(x.Details)
		}
		return Entry{}, err
	}
	return Entry{Namespace: ns, Key: key, Value: e.Value, Bytes: e.Size()}, nil
}

// Get returns an entry; not_found if absent.
func (s *Service) Get(ctx context.Context, tenantID, ns, key string) (Entry, error) {
	if err := checkNames(ns, key); err != nil {
		return Entry{}, err
	}
	e, err := s.Store.MemoryGet(ctx, tenantID, ns, key)
	if err != nil {
		if errors.Is(err, errs.ErrNotFound) {
			return Entry{}, errs.E(errs.NotFound, "memory key %q not found in namespace %q", key, ns)
		}
		return Entry{}, err
	}
	return Entry{Namespace: ns, Key: key, Value: e.Value, Bytes: e.Size(), UpdatedAt: e.UpdatedAt}, nil
}

// Delete removes an entry; a missing one is not an error.
func (s *Service) Delete(ctx context.Context, tenantID, ns, key string) error {
	if err := checkNames(ns, key); err != nil {
		return err
	}
	return s.Store.MemoryDelete(ctx, tenantID, ns, key)
}

// Check validates q and fills its defaults (mode hybrid, top_k 10).
func (q *Query) Check() error {
	switch {
	case q.Query == "":
		return errs.Field("query", "is required")
	case len(q.Query) > MaxQueryLen:
		return errs.Field("query", "must be at most %d bytes", MaxQueryLen)
	case q.TopK < 0 || q.TopK > MaxTopK:
		return errs.Field("top_k", "must be between 1 and %d", MaxTopK)
	}
	if q.TopK == 0 {
		q.TopK = DefaultTopK
	}
	switch q.Mode {
	case "":
		q.Mode = ModeHybrid
	case ModeKeyword, ModeVector, ModeHybrid:
	default:
		return errs.Field("mode", "must be keyword, vector or hybrid, not %q", q.Mode)
	}
	for k, v := range q.Filter {
		if !json.Valid(v) {
			return errs.Field("filter."+k, "is not valid JSON")
		}
	}
	return nil
}

// Search ranks the namespace's entries for q. Scores: keyword, the
// backend's full-text relevance; vector, cosine similarity; hybrid, the
// reciprocal-rank fusion of both lists.
func (s *Service) Search(ctx context.Context, c Caller, ns string, q Query) ([]Result, error) {
	if err := CheckName("namespace", ns, MaxNamespaceLen); err != nil {
		return nil, err
	}
	if err := q.Check(); err != nil {
		return nil, err
	}
	p := store.MemorySearchParams{TenantID: c.TenantID, Namespace: ns, Filter: q.Filter, Limit: q.TopK}
	if q.Mode == ModeHybrid {
		// Each list is deeper than top_k, so an entry ranked well by one
		// and poorly by the other can still be fused in.
		p.Limit = min(MaxTopK, max(4*q.TopK, 20))
	}
	var keyword, vector []store.MemoryHit
	if q.Mode != ModeVector {
		p.Terms = store.MemoryTerms(q.Query)
		hits, err := s.Store.MemoryKeywordSearch(ctx, p)
		if err != nil {
			return nil, err
		}
		keyword = hits
	}
	if q.Mode != ModeKeyword {
		vecs, model, err := s.embed(ctx, c, q.Query)
		if err != nil {
			return nil, err
		}
		p.Vector, p.Model = vecs[0], model
		hits, err := s.Store.MemoryVectorSearch(ctx, p)
		if err != nil {
			return nil, err
		}
		vector = hits
	}
	var hits []store.MemoryHit
	switch q.Mode {
	case ModeKeyword:
		hits = keyword
	case ModeVector:
		hits = vector
	default:
		hits = Fuse(q.TopK, keyword, vector)
	}
	out := make([]Result, len(hits))
	for i, h := range hits {
		out[i] = Result{Key: h.Key, Score: h.Score, Value: h.Value}
	}
	return out, nil
}

// Fuse merges ranked lists by reciprocal-rank fusion: each hit scores
// Σ 1/(RRFK + rank) over the lists it is in (rank from 1); the best limit
// are returned, ties by key.
func Fuse(limit int, lists ...[]store.MemoryHit) []store.MemoryHit {
	byKey := map[string]*store.MemoryHit{}
	var order []string
	for _, list := range lists {
		for rank, h := range list {
			f, ok := byKey[h.Key]
			if !ok {
				f = &store.MemoryHit{Key: h.Key, Value: h.Value}
				byKey[h.Key] = f
				order = append(order, h.Key)
			}
			f.Score += 1 / float64(RRFK+rank+1)
		}
	}
	out := make([]store.MemoryHit, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}
