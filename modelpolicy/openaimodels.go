package modelpolicy

import (
	"net/http"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
)

// OpenAIBasePath is the base URL path of the OpenAI-compatible surface:
// the official SDKs are pointed at <model-policy URL>/openai/v1 and use
// it unchanged. /v1/models keeps our own shape (GET /v1/models is an
// operation of the original API too); /v1/chat/completions and
// /v1/embeddings stay served for existing callers.
const OpenAIBasePath = "/openai/v1"

// oaModel is OpenAI's model object.
type oaModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// entitledModels returns the catalogue's models the caller may use, in
// catalogue order.
func (s *Server) entitledModels(c caller) []*ModelConfig {
	var out []*ModelConfig
	for i := range s.cat.Models {
		m := &s.cat.Models[i]
		if ok, _ := entitled(c.tenant, m); !ok || !c.policy.Models.Permits(m.ID()) || !c.policy.Backends.Permits(m.Backend) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// oaModelOf renders m; created is when this process loaded its catalogue
// (the catalogue has no creation dates, and the SDKs require the field).
func (s *Server) oaModelOf(m *ModelConfig) oaModel {
	return oaModel{ID: m.ID(), Object: "model", Created: s.started.Unix(), OwnedBy: m.Backend}
}

// handleOAModels is GET /openai/v1/models: OpenAI's list shape.
func (s *Server) handleOAModels(w http.ResponseWriter, r *http.Request) error {
	c, err := s.resolveCaller(r.Context(), auth.ScopeModelsList, nil)
	if err != nil {
		return err
	}
	data := []oaModel{}
	for _, m := range s.entitledModels(c) {
		data = append(data, s.oaModelOf(m))
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"object": "list", "data": data})
	return nil
}

// handleOAModel is GET /openai/v1/models/{model} (ids contain a slash:
// backend/name). A model the caller is not entitled to is as unknown as
// one that does not exist.
func (s *Server) handleOAModel(w http.ResponseWriter, r *http.Request) error {
	c, err := s.resolveCaller(r.Context(), auth.ScopeModelsList, nil)
	if err != nil {
		return err
	}
	id := r.PathValue("model")
	for _, m := range s.entitledModels(c) {
		if m.ID() == id {
			writeJSON(w, r, http.StatusOK, s.oaModelOf(m))
			return nil
		}
	}
	return (&errs.Error{Code: errs.NotFound, Message: "model " + id + " not found (GET " + OpenAIBasePath + "/models lists the models you may use)"}).
		WithDetails(map[string]any{"field": "model", "model": id})
}
