package agentorchestrator

import (
	"errors"
	"net/http"
	"strings"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/dispatch"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
)

// Worker nodes are platform infrastructure: only a platform_admin
// registers, lists and revokes them (a tenant admin gets 403).
func (s *Server) registerWorkerRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/admin/workers", httpx.H(s.handleListWorkers))
	mux.Handle("POST /v1/admin/workers", httpx.H(s.handleRegisterWorker))
	mux.Handle("GET /v1/admin/workers/{worker_id}", httpx.H(s.handleGetWorker))
	mux.Handle("DELETE /v1/admin/workers/{worker_id}", httpx.H(s.handleRevokeWorker))
}

func requirePlatformAdmin(r *http.Request, what string) (auth.Context, error) {
	ac, err := auth.Require(r.Context(), auth.ScopeAdmin)
	if err != nil {
		return ac, err
	}
	if !ac.HasRole(auth.RolePlatformAdmin) {
		return ac, errs.E(errs.Forbidden, "%s needs the platform_admin role", what)
	}
	return ac, nil
}

// workerView is a registered worker and, when it heartbeats to this
// replica's bus, what it last said.
type workerView struct {
	store.Worker
	Live *dispatch.Worker `json:"live"`
}

func (s *Server) workerView(w store.Worker, live map[string]dispatch.Worker) workerView {
	v := workerView{Worker: w}
	if l, ok := live[w.WorkerID]; ok && w.Status == store.WorkerActive {
		v.Live = &l
	}
	return v
}

func (s *Server) liveWorkers() map[string]dispatch.Worker {
	out := map[string]dispatch.Worker{}
	if s.cfg.Workers != nil {
		for _, l := range s.cfg.Workers.Live() {
			out[l.WorkerID] = l
		}
	}
	return out
}

func (s *Server) handleListWorkers(w http.ResponseWriter, r *http.Request) error {
	if _, err := requirePlatformAdmin(r, "listing workers"); err != nil {
		return err
	}
	ws, err := s.cfg.Store.ListWorkers(r.Context())
	if err != nil {
		return err
	}
	live := s.liveWorkers()
	out := make([]workerView, 0, len(ws))
	for _, wk := range ws {
		out = append(out, s.workerView(wk, live))
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"workers": out})
	return nil
}

// workerRegister is the body of POST /v1/admin/workers.
type workerRegister struct {
	WorkerID  string            `json:"worker_id"`
	Labels    map[string]string `json:"labels"`
	PublicKey string            `json:"public_key"`
	Tenants   []string          `json:"tenants"`
}

func (s *Server) handleRegisterWorker(w http.ResponseWriter, r *http.Request) error {
	ac, err := requirePlatformAdmin(r, "registering workers")
	if err != nil {
		return err
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	var wrapped struct {
		Worker *workerRegister `json:"worker"`
	}
	if err := httpx.DecodeBytes(body, &wrapped); err != nil {
		return err
	}
	in := wrapped.Worker
	if in == nil {
		in = &workerRegister{}
		if err := httpx.DecodeBytes(body, in); err != nil {
			return err
		}
	}
	now := s.cfg.Now().UTC()
	wk := store.Worker{WorkerID: strings.TrimSpace(in.WorkerID), Labels: in.Labels, PublicKey: strings.TrimSpace(in.PublicKey),
		Tenants: in.Tenants, Status: store.WorkerActive, CreatedAt: now, UpdatedAt: now}
	if len(wk.Labels) == 0 {
		return errs.Field("labels", "a worker needs at least one label (tool calls are placed by labels)")
	}
	if wk.Tenants == nil {
		wk.Tenants = []string{}
	}
	if err := wk.Validate(); err != nil {
		return err
	}
	for _, t := range wk.Tenants {
		if _, err := s.cfg.Store.GetTenant(r.Context(), t); err != nil {
			if errors.Is(err, errs.ErrNotFound) {
				return errs.Field("tenants", "tenant %s does not exist", t)
			}
			return err
		}
	}
	if err := s.cfg.Store.CreateWorker(r.Context(), wk); err != nil {
		if errors.Is(err, errs.ErrConflict) {
			return errs.E(errs.Conflict, "worker %s (or its public key) is already registered; a revoked id is not reused", wk.WorkerID)
		}
		return err
	}
	s.audit(r, ac, ac.TenantID, "worker.register", "worker/"+wk.WorkerID, map[string]any{"labels": wk.Labels, "public_key": wk.PublicKey, "tenants": wk.Tenants})
	httpx.JSON(w, r, http.StatusCreated, map[string]any{"worker": s.workerView(wk, nil)})
	return nil
}

func (s *Server) handleGetWorker(w http.ResponseWriter, r *http.Request) error {
	if _, err := requirePlatformAdmin(r, "reading workers"); err != nil {
		return err
	}
	id := r.PathValue("worker_id")
	wk, err := s.cfg.Store.GetWorker(r.Context(), id)
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "worker %s not found", id)
	} else if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"worker": s.workerView(wk, s.liveWorkers())})
	return nil
}

// handleRevokeWorker revokes a worker: the bus drops its credential
// within a second (natsd re-reads the registry) and closes its
// connection; its in-flight calls end as a dead worker's do.
func (s *Server) handleRevokeWorker(w http.ResponseWriter, r *http.Request) error {
	ac, err := requirePlatformAdmin(r, "revoking workers")
	if err != nil {
		return err
	}
	id := r.PathValue("worker_id")
	wk, err := s.cfg.Store.RevokeWorker(r.Context(), id, s.cfg.Now().UTC())
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "worker %s not found", id)
	} else if err != nil {
		return err
	}
	s.audit(r, ac, ac.TenantID, "worker.revoke", "worker/"+id, nil)
	httpx.JSON(w, r, http.StatusOK, map[string]any{"worker": s.workerView(wk, nil)})
	return nil
}
