package builtin

import (
	"context"
	"encoding/json"

	"github.com/nexixai/agentos/internal/memory"
	"github.com/nexixai/agentos/internal/tools"
)

// Tool ids of the searchable memory tools.
const (
	MemoryPutID    = "tool.memory.put"
	MemorySearchID = "tool.memory.search"
)

var memoryPutSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "key":       {"type": "string", "minLength": 1, "maxLength": 256, "description": "Key to store the document under."},
    "value":     {"description": "Any JSON value; its \"text\" field (or else the whole value) is indexed for search."},
    "namespace": {"type": "string", "minLength": 1, "maxLength": 64, "description": "Namespace (default \"default\")."}
  },
  "required": ["key", "value"]
}`)

var memorySearchSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "query":     {"type": "string", "minLength": 1, "maxLength": 4096, "description": "What to look for."},
    "top_k":     {"type": "integer", "minimum": 1, "maximum": 100, "description": "How many results at most (default 10)."},
    "mode":      {"type": "string", "enum": ["keyword", "vector", "hybrid"], "description": "Ranking: full-text, embedding similarity or both fused (default hybrid)."},
    "filter":    {"type": "object", "description": "Keep only documents whose value has these top-level fields equal to these JSON values."},
    "namespace": {"type": "string", "minLength": 1, "maxLength": 64, "description": "Namespace (default \"default\")."}
  },
  "required": ["query"]
}`)

type memoryPut struct{ svc *memory.Service }

// MemoryPut returns tool.memory.put: {"key", "value", "namespace"?} →
// {"key", "namespace", "bytes"}; the document is indexed for
// tool.memory.search (its embedding is made through model-policy on the
// run's behalf) and counts against max_memory_bytes.
func MemoryPut(svc *memory.Service) tools.Tool { return &memoryPut{svc: svc} }

func (*memoryPut) Spec() tools.Spec {
	return tools.Spec{
		ToolID:      MemoryPutID,
		Name:        "memory_put",
		Description: "Stores a JSON document under a key in the tenant's searchable memory, replacing any previous one.",
		InputSchema: memoryPutSchema,
		Idempotent:  true,
	}
}

func (m *memoryPut) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	if err := tools.ContextError(ctx, MemoryPutID); err != nil {
		return nil, err
	}
	var in struct {
		Key       string          `json:"key"`
		Value     json.RawMessage `json:"value"`
		Namespace string          `json:"namespace"`
	}
	if err := tools.DecodeInput(memoryPutSchema, c.Input, &in); err != nil {
		return nil, err
	}
	caller, err := memoryCaller(c)
	if err != nil {
		return nil, err
	}
	e, err := m.svc.Put(ctx, caller, namespaceOr(in.Namespace), in.Key, in.Value)
	if err != nil {
		return nil, kvError(ctx, MemoryPutID, err)
	}
	return marshal(MemoryPutID, map[string]any{"key": e.Key, "namespace": e.Namespace, "bytes": e.Bytes})
}

type memorySearch struct{ svc *memory.Service }

// MemorySearch returns tool.memory.search: {"query", "top_k"?, "mode"?,
// "filter"?, "namespace"?} → {"namespace", "results": [{"key", "score",
// "value"}]}, best first.
func MemorySearch(svc *memory.Service) tools.Tool { return &memorySearch{svc: svc} }

func (*memorySearch) Spec() tools.Spec {
	return tools.Spec{
		ToolID:      MemorySearchID,
		Name:        "memory_search",
		Description: "Searches the tenant's memory by keyword, by meaning (embeddings) or both, and returns the best documents.",
		InputSchema: memorySearchSchema,
		Idempotent:  true,
	}
}

func (m *memorySearch) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	if err := tools.ContextError(ctx, MemorySearchID); err != nil {
		return nil, err
	}
	var in struct {
		memory.Query
		Namespace string `json:"namespace"`
	}
	if err := tools.DecodeInput(memorySearchSchema, c.Input, &in); err != nil {
		return nil, err
	}
	caller, err := memoryCaller(c)
	if err != nil {
		return nil, err
	}
	ns := namespaceOr(in.Namespace)
	res, err := m.svc.Search(ctx, caller, ns, in.Query)
	if err != nil {
		return nil, kvError(ctx, MemorySearchID, err)
	}
	if res == nil {
		res = []memory.Result{}
	}
	return marshal(MemorySearchID, map[string]any{"namespace": ns, "results": res})
}

func namespaceOr(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}

// memoryCaller is the call's tenant with the run's Auth Context, so the
// embedding calls are governed and metered as the run's own model calls.
func memoryCaller(c tools.Call) (memory.Caller, error) {
	tenant, err := callTenant(c)
	if err != nil {
		return memory.Caller{}, err
	}
	return memory.Caller{Auth: c.Auth, TenantID: tenant, AgentID: c.AgentID, RunID: c.RunID}, nil
}
