package tools

import (
	"slices"
	"strings"
	"sync"

	"github.com/nexixai/agentos/internal/errs"
)

// IDPrefix starts every tool id (CONTRACT §2).
const IDPrefix = "tool."

// Registry holds the tools a node can invoke, keyed by tool id. It is safe
// for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	tools map[string]Tool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{tools: map[string]Tool{}}
}

// Register adds t. It returns invalid_request when t's Spec is malformed
// (see CheckSpec) and conflict when a tool with the same id is registered.
func (r *Registry) Register(t Tool) error {
	if t == nil {
		return errs.Field("tool", "is nil")
	}
	spec := t.Spec()
	if err := CheckSpec(spec); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.tools[spec.ToolID]; ok {
		return errs.E(errs.Conflict, "tool_id: tool %q is already registered", spec.ToolID)
	}
	r.tools[spec.ToolID] = t
	return nil
}

// Get returns the tool with id toolID.
func (r *Registry) Get(toolID string) (Tool, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.tools[toolID]
	return t, ok
}

// Specs returns the specs of the tools named by ids, in that order,
// skipping unknown ids and repeats.
func (r *Registry) Specs(ids []string) []Spec {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Spec, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		t, ok := r.tools[id]
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, t.Spec())
	}
	return out
}

// IDs returns the registered tool ids, sorted.
func (r *Registry) IDs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]string, 0, len(r.tools))
	for id := range r.tools {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// CheckSpec reports whether s is well formed: the id starts with "tool."
// and has no spaces, name and description are set, the input schema is a
// valid object schema (CheckSchema) and the default timeout is not negative.
// Errors are invalid_request naming the field.
func CheckSpec(s Spec) error {
	switch {
	case !strings.HasPrefix(s.ToolID, IDPrefix) || len(s.ToolID) == len(IDPrefix):
		return errs.Field("tool_id", "must start with %q and name a tool, got %q", IDPrefix, s.ToolID)
	case strings.ContainsFunc(s.ToolID, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return errs.Field("tool_id", "must not contain spaces or control characters")
	case strings.TrimSpace(s.Name) == "":
		return errs.Field("name", "is required")
	case strings.TrimSpace(s.Description) == "":
		return errs.Field("description", "is required")
	case s.DefaultTimeout < 0:
		return errs.Field("default_timeout", "must not be negative")
	}
	if err := CheckSchema(s.InputSchema); err != nil {
		return errs.Field("input_schema", "%s", err.Error())
	}
	return nil
}
