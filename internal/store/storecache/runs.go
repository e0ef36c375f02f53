package storecache

import (
	"context"
	"maps"
	"slices"

	"github.com/nexixai/agentos/internal/store"
)

// Terminal runs (completed, failed, canceled) are served from memory.
// They are immutable: every status change the platform makes names the
// statuses it starts from (RunChange.FromStatuses), all of them live
// ones, so the store refuses it on a terminal run. A change that could
// still touch a terminal run (no FromStatuses, or a terminal one among
// them) drops the entry here and is reported to Notify (EntityRun), so
// replicas drop theirs too. Live runs are never cached: they change with
// every executor step. GET /v1/runs/{id} on a finished run, the common
// poll, then costs no database read and no JSON decode.

// EntityRun names a run (ID: the run id) in an Invalidation.
const EntityRun = "run"

// maxRuns bounds the run cache (entries are a few KB; about 10 MB at most).
const maxRuns = 4096

type runKey struct{ tenantID, runID string }

// GetRun returns a terminal run from memory when this process has read it
// before; other runs always come from the store.
func (s *Store) GetRun(ctx context.Context, tenantID, runID string) (store.Run, error) {
	if bypassed(ctx) {
		return s.Store.GetRun(ctx, tenantID, runID)
	}
	k := runKey{tenantID, runID}
	s.mu.Lock()
	r, ok := s.runs[k]
	gen := s.gen
	s.mu.Unlock()
	if ok {
		return cloneRun(r), nil
	}
	r, err := s.Store.GetRun(ctx, tenantID, runID)
	if err != nil || !r.Status.Terminal() {
		return r, err
	}
	s.mu.Lock()
	if s.gen == gen {
		s.putRun(k, cloneRun(r))
	}
	s.mu.Unlock()
	return r, nil
}

// putRun caches r, evicting an arbitrary entry when full (cheap, and
// bounded); the caller holds s.mu.
func (s *Store) putRun(k runKey, r store.Run) {
	if _, ok := s.runs[k]; !ok && len(s.runs) >= maxRuns {
		for old := range s.runs {
			delete(s.runs, old)
			break
		}
	}
	s.runs[k] = r
}

// ApplyRunChange writes through. A change that may rewrite a terminal run
// drops the cached copy here and on every replica.
func (s *Store) ApplyRunChange(ctx context.Context, c store.RunChange) ([]store.Event, error) {
	if !mayChangeTerminalRun(c) {
		return s.Store.ApplyRunChange(ctx, c)
	}
	s.dropRun(c.TenantID, c.RunID)
	evs, err := s.Store.ApplyRunChange(ctx, c)
	s.dropRun(c.TenantID, c.RunID)
	if err == nil {
		s.changed(ctx, Invalidation{Entity: EntityRun, TenantID: c.TenantID, ID: c.RunID})
	}
	return evs, err
}

// mayChangeTerminalRun: c rewrites the run's fields and does not require
// it to be live.
func mayChangeTerminalRun(c store.RunChange) bool {
	if c.Run == nil {
		return false // steps, events, approvals: the run document is unchanged
	}
	return len(c.FromStatuses) == 0 || slices.ContainsFunc(c.FromStatuses, store.RunStatus.Terminal)
}

func (s *Store) dropRun(tenantID, runID string) {
	s.mu.Lock()
	s.gen++
	delete(s.runs, runKey{tenantID, runID})
	s.mu.Unlock()
}

// cloneRun copies everything r points to, so that a caller changing its
// copy cannot change the cached one.
func cloneRun(r store.Run) store.Run {
	r.StartedAt = clonePtr(r.StartedAt)
	r.CompletedAt = clonePtr(r.CompletedAt)
	r.Context = slices.Clone(r.Context)
	r.Tooling.ToolAllowlist = slices.Clone(r.Tooling.ToolAllowlist)
	r.Tooling.ToolDenymap = slices.Clone(r.Tooling.ToolDenymap)
	r.RunOptions.Stream = clonePtr(r.RunOptions.Stream)
	r.Output = clonePtr(r.Output)
	if r.Error != nil {
		e := *r.Error
		e.Details = maps.Clone(e.Details)
		r.Error = &e
	}
	return r
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
