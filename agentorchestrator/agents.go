package agentorchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
)

func (s *Server) handleListAgents(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeAgentsRead)
	if err != nil {
		return err
	}
	agents, err := s.cfg.Store.ListAgents(r.Context(), ac.TenantID)
	if err != nil {
		return err
	}
	if agents == nil {
		agents = []store.Agent{}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"agents": agents})
	return nil
}

func (s *Server) handleGetAgent(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeAgentsRead)
	if err != nil {
		return err
	}
	id := r.PathValue("agent_id")
	a, err := s.cfg.Store.GetAgent(r.Context(), ac.TenantID, id)
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "agent %s not found", id)
	} else if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"agent": a})
	return nil
}

var agentIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$`)

// agentPut is the body of PUT /v1/admin/agents/{agent_id}.
type agentPut struct {
	Name         string               `json:"name"`
	Description  string               `json:"description"`
	Version      *int                 `json:"version"`
	Status       string               `json:"status"`
	ModelRef     string               `json:"model_ref"`
	Instructions string               `json:"instructions"`
	Tools        []string             `json:"tools"`
	Defaults     *store.AgentDefaults `json:"defaults"`
	store.AgentApproval
	store.AgentPlacement
}

// handlePutAgent creates an agent (201) or a new version of it (200).
func (s *Server) handlePutAgent(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeAgentsWrite)
	if err != nil {
		return err
	}
	if !ac.IsAdminOf(ac.TenantID) {
		return errs.E(errs.Forbidden, "putting agents needs the tenant_admin or platform_admin role")
	}
	id := r.PathValue("agent_id")
	if !agentIDRE.MatchString(id) {
		return errs.Field("agent_id", "must be 1-128 characters of letters, digits, _ . - and start with a letter or digit")
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	var wrapped struct {
		Agent *agentPut `json:"agent"`
	}
	if err := httpx.DecodeBytes(body, &wrapped); err != nil {
		return err
	}
	in := wrapped.Agent
	if in == nil {
		in = &agentPut{}
		if err := httpx.DecodeBytes(body, in); err != nil {
			return err
		}
	}
	a, err := s.validateAgent(r.Context(), id, ac.TenantID, in)
	if err != nil {
		return err
	}
	ctx := r.Context()
	now := s.cfg.Now().UTC()
	prev, err := s.cfg.Store.GetAgent(ctx, ac.TenantID, id)
	status := http.StatusCreated
	switch {
	case err == nil:
		status = http.StatusOK
		a.CreatedAt = prev.CreatedAt
		a.Version = prev.Version + 1
		if in.Version != nil {
			if *in.Version <= prev.Version {
				return errs.Field("version", "must be greater than the current version %d", prev.Version)
			}
			a.Version = *in.Version
		}
	case errors.Is(err, errs.ErrNotFound):
		a.CreatedAt = now
		a.Version = 1
		if in.Version != nil {
			a.Version = *in.Version
		}
	default:
		return err
	}
	a.UpdatedAt = now
	if err := s.cfg.Store.PutAgent(ctx, a); err != nil {
		return err
	}
	s.audit(r, ac, ac.TenantID, "agent.put", "agent/"+id, map[string]any{"version": a.Version})
	httpx.JSON(w, r, status, map[string]any{"agent": a})
	return nil
}

func (s *Server) validateAgent(ctx context.Context, id, tenantID string, in *agentPut) (store.Agent, error) {
	a := store.Agent{AgentID: id, TenantID: tenantID, Name: strings.TrimSpace(in.Name), Description: in.Description,
		Status: in.Status, ModelRef: strings.TrimSpace(in.ModelRef), Instructions: in.Instructions, Tools: in.Tools}
	if a.Name == "" {
		return a, errs.Field("agent.name", "is required")
	}
	if a.ModelRef == "" {
		return a, errs.Field("agent.model_ref", "is required (tier:fast|balanced|premium, <backend>/<model> or a model id)")
	}
	if t, ok := strings.CutPrefix(a.ModelRef, "tier:"); ok && t != "fast" && t != "balanced" && t != "premium" {
		return a, errs.Field("agent.model_ref", "unknown tier %q (want fast, balanced or premium)", t)
	}
	switch a.Status {
	case "":
		a.Status = store.AgentActive
	case store.AgentActive, store.AgentInactive, store.AgentDeprecated:
	default:
		return a, errs.Field("agent.status", "must be active, inactive or deprecated, got %q", a.Status)
	}
	if a.Tools == nil {
		a.Tools = []string{}
	}
	seen := map[string]bool{}
	for i, t := range a.Tools {
		if _, ok, err := s.resolveTool(ctx, tenantID, t); err != nil {
			return a, err
		} else if !ok {
			return a, toolFieldError(i, "unknown tool %q (known: %s)", t, strings.Join(s.knownToolIDs(ctx, tenantID), ", "))
		}
		if seen[t] {
			return a, errs.Field(fmt.Sprintf("agent.tools[%d]", i), "duplicate tool %q", t)
		}
		seen[t] = true
	}
	if in.Defaults != nil {
		a.Defaults = *in.Defaults
	}
	d := &a.Defaults
	if d.MaxSteps == 0 {
		d.MaxSteps = defaultMaxSteps
	}
	if d.TimeoutMs == 0 {
		d.TimeoutMs = defaultTimeout
	}
	switch {
	case d.MaxSteps < 1 || d.MaxSteps > maxRunSteps:
		return a, errs.Field("agent.defaults.max_steps", "must be between 1 and %d", maxRunSteps)
	case d.TimeoutMs < 1 || d.TimeoutMs > maxRunTimeoutMs:
		return a, errs.Field("agent.defaults.timeout_ms", "must be between 1 and %d", maxRunTimeoutMs)
	case d.OnToolError != "" && d.OnToolError != "continue" && d.OnToolError != "fail":
		return a, errs.Field("agent.defaults.on_tool_error", "must be continue or fail")
	case d.ModelRetries < 0 || d.ModelRetries > 5:
		return a, errs.Field("agent.defaults.model_retries", "must be between 0 and 5")
	}
	a.AgentApproval = in.AgentApproval
	if err := validateApproval(&a); err != nil {
		return a, err
	}
	a.AgentPlacement = in.AgentPlacement
	if err := validatePlacement(a); err != nil {
		return a, err
	}
	if in.Version != nil && *in.Version < 1 {
		return a, errs.Field("agent.version", "must be at least 1")
	}
	return a, nil
}

// validatePlacement checks an agent's placement: valid labels, and
// per-tool overrides only for the agent's own tools.
func validatePlacement(a store.Agent) error {
	p := a.Placement
	if p == nil {
		return nil
	}
	if err := store.ValidateLabels("agent.placement.labels", p.Labels); err != nil {
		return err
	}
	for id, tp := range p.Tools {
		if !slices.Contains(a.Tools, id) {
			return errs.Field("agent.placement.tools", "%q is not one of the agent's tools", id)
		}
		if err := store.ValidateLabels("agent.placement.tools."+id+".labels", tp.Labels); err != nil {
			return err
		}
	}
	return nil
}
