package agentorchestrator

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
)

// registerArtifactRoutes serves the run artifacts tools and workers
// stored (internal/artifact): the list of a run's, one's metadata and its
// content. All tenant-checked: another tenant's artifact is 404.
func (s *Server) registerArtifactRoutes(api *http.ServeMux) {
	api.Handle("GET /v1/runs/{run_id}/artifacts", httpx.H(s.handleListArtifacts))
	api.Handle("GET /v1/artifacts/{artifact_id}", httpx.H(s.handleGetArtifact))
	api.Handle("GET /v1/artifacts/{artifact_id}/content", httpx.H(s.handleArtifactContent))
}

// artifactBody is an artifact's JSON form: its metadata and where its
// content is.
func artifactBody(a store.Artifact) map[string]any {
	return map[string]any{"artifact_id": a.ArtifactID, "tenant_id": a.TenantID, "run_id": a.RunID,
		"step_id": a.StepID, "tool_call_id": a.ToolCallID, "name": a.Name, "content_type": a.ContentType,
		"size": a.Size, "sha256": a.SHA256, "created_at": a.CreatedAt, "expires_at": a.ExpiresAt,
		"content_url": "/v1/artifacts/" + a.ArtifactID + "/content"}
}

func (s *Server) handleListArtifacts(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	run, err := s.getRun(r, ac, r.PathValue("run_id"))
	if err != nil {
		return err
	}
	list := []store.Artifact{}
	if s.artifacts != nil {
		if list, err = s.artifacts.List(r.Context(), ac.TenantID, run.RunID); err != nil {
			return err
		}
	}
	out := make([]map[string]any, len(list))
	for i, a := range list {
		out[i] = artifactBody(a)
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"artifacts": out})
	return nil
}

// getArtifact finds the caller's tenant's artifact; a missing one and
// another tenant's answer the same not_found.
func (s *Server) getArtifact(ctx context.Context, ac auth.Context, id string) (store.Artifact, error) {
	if s.artifacts == nil {
		return store.Artifact{}, errs.E(errs.NotFound, "artifact %s not found", id)
	}
	a, err := s.artifacts.Get(ctx, ac.TenantID, id)
	if errors.Is(err, errs.ErrNotFound) {
		return a, errs.E(errs.NotFound, "artifact %s not found", id)
	}
	return a, err
}

func (s *Server) handleGetArtifact(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	a, err := s.getArtifact(r.Context(), ac, r.PathValue("artifact_id"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", artifactETag(a))
	httpx.JSON(w, r, http.StatusOK, map[string]any{"artifact": artifactBody(a)})
	return nil
}

// artifactETag is the strong ETag of an artifact's content: its SHA-256.
func artifactETag(a store.Artifact) string { return `"` + a.SHA256 + `"` }

// handleArtifactContent streams the bytes with their recorded type and
// length. The content is whatever a tool fetched, so it is served as a
// download the browser must not sniff or render in the API's origin.
func (s *Server) handleArtifactContent(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	id := r.PathValue("artifact_id")
	if _, err := s.getArtifact(r.Context(), ac, id); err != nil {
		return err
	}
	a, rc, err := s.artifacts.Open(r.Context(), ac.TenantID, id)
	if errors.Is(err, errs.ErrNotFound) {
		// Recorded but its bytes are gone (a delete in progress).
		return errs.E(errs.NotFound, "artifact %s not found", id)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	h := w.Header()
	etag := artifactETag(a)
	h.Set("ETag", etag)
	h.Set("Cache-Control", "private, no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	if sum, err := hex.DecodeString(a.SHA256); err == nil {
		// RFC 9530: lets a client check the download without parsing ETags.
		h.Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum)+":")
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", a.ContentType)
	h.Set("Content-Length", strconv.FormatInt(a.Size, 10))
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", a.Name))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(w, rc); err != nil {
		// Headers are sent: all that is left is to cut the response short,
		// which the client sees as fewer bytes than Content-Length.
		s.log.Warn("artifact download cut short", "artifact_id", a.ArtifactID, "err", err)
	}
	return nil
}

// etagMatches reports whether an If-None-Match value lists etag (or "*").
func etagMatches(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == "*" || v == etag {
			return true
		}
	}
	return false
}
