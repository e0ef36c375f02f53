package agentorchestrator

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/memory"
)

// registerMemoryRoutes serves searchable memory: PUT/GET/DELETE
// /v1/memory/{namespace}/{key} and POST /v1/memory/{namespace}:search.
func (s *Server) registerMemoryRoutes(api *http.ServeMux) {
	api.Handle("PUT /v1/memory/{namespace}/{key...}", httpx.H(s.handleMemoryPut))
	api.Handle("GET /v1/memory/{namespace}/{key...}", httpx.H(s.handleMemoryGet))
	api.Handle("DELETE /v1/memory/{namespace}/{key...}", httpx.H(s.handleMemoryDelete))
	// ServeMux wildcards are whole segments, so "{namespace}:search" is
	// parsed by the handler.
	api.Handle("POST /v1/memory/{namespace_action}", httpx.H(s.handleMemorySearch))
}

func memoryCaller(ac auth.Context) memory.Caller {
	return memory.Caller{Auth: ac, TenantID: ac.TenantID}
}

func (s *Server) handleMemoryPut(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeMemoryWrite)
	if err != nil {
		return err
	}
	var body struct {
		Value json.RawMessage `json:"value"`
	}
	if err := httpx.Decode(r, &body); err != nil {
		return err
	}
	if len(body.Value) == 0 {
		return errs.Field("value", "is required")
	}
	e, err := s.memory.Put(r.Context(), memoryCaller(ac), r.PathValue("namespace"), r.PathValue("key"), body.Value)
	if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"namespace": e.Namespace, "key": e.Key, "bytes": e.Bytes})
	return nil
}

func (s *Server) handleMemoryGet(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeMemoryRead)
	if err != nil {
		return err
	}
	e, err := s.memory.Get(r.Context(), ac.TenantID, r.PathValue("namespace"), r.PathValue("key"))
	if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"namespace": e.Namespace, "key": e.Key, "value": e.Value,
		"bytes": e.Bytes, "updated_at": e.UpdatedAt})
	return nil
}

func (s *Server) handleMemoryDelete(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeMemoryWrite)
	if err != nil {
		return err
	}
	if err := s.memory.Delete(r.Context(), ac.TenantID, r.PathValue("namespace"), r.PathValue("key")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleMemorySearch(w http.ResponseWriter, r *http.Request) error {
	ns, ok := strings.CutSuffix(r.PathValue("namespace_action"), ":search")
	if !ok {
		return errs.E(errs.NotFound, "no route for POST %s: the only namespace action is :search", r.URL.Path)
	}
	ac, err := requireTenant(r.Context(), auth.ScopeMemoryRead)
	if err != nil {
		return err
	}
	var q memory.Query
	if err := httpx.Decode(r, &q); err != nil {
		return err
	}
	res, err := s.memory.Search(r.Context(), memoryCaller(ac), ns, q)
	if err != nil {
		return err
	}
	if res == nil {
		res = []memory.Result{}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"results": res})
	return nil
}
