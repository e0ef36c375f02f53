// Package builtin holds the tools every AgentOS node ships: tool.echo,
// tool.kv.put / tool.kv.get (tenant-scoped memory under the tenant's
// max_memory_bytes quota) and tool.http.fetch (HTTP GET/POST with an SSRF
// guard that checks every resolved address at dial time).
//
// Each constructor returns a tools.Tool; Register adds them all to a
// registry. Errors are *errs.Error: invalid_request naming the field for
// bad input, quota_exceeded, forbidden, timeout, dependency_unavailable.
package builtin

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/memory"
	"github.com/nexixai/agentos/internal/tools"
)

// Deps are what the builtin tools need from the node.
type Deps struct {
	// KV stores tool.kv.* values (store.KVStore satisfies it). Required.
	KV KV
	// KVQuota returns a tenant's max_memory_bytes (0 = unlimited). Nil
	// means unlimited for every tenant.
	KVQuota func(ctx context.Context, tenantID string) (int64, error)
	// Memory serves tool.memory.put / tool.memory.search; nil leaves
	// them out.
	Memory *memory.Service
	// HTTPFetch configures tool.http.fetch; the zero value uses the
	// defaults documented on HTTPFetchConfig.
	HTTPFetch HTTPFetchConfig
}

// Register adds every builtin tool (tool.echo, tool.sleep, tool.kv.put, tool.kv.get,
// tool.http.fetch, and tool.memory.put / tool.memory.search when
// Deps.Memory is set) to reg.
func Register(reg *tools.Registry, deps Deps) error {
	if deps.KV == nil {
		return errs.E(errs.Internal, "builtin tools: Deps.KV is required")
	}
	ts := []tools.Tool{Echo(), Sleep(), KVPut(deps.KV, deps.KVQuota), KVGet(deps.KV), HTTPFetch(deps.HTTPFetch)}
	if deps.Memory != nil {
		ts = append(ts, MemoryPut(deps.Memory), MemorySearch(deps.Memory))
	}
	for _, t := range ts {
		if err := reg.Register(t); err != nil {
			return err
		}
	}
	return nil
}

// marshal encodes a tool's output. HTML characters are not escaped: each
// would grow six-fold (\u003c), so a capped body could come out several
// times its cap.
func marshal(toolID string, v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "%s: cannot encode output", toolID)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
