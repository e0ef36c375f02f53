package store

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/errs"
)

// Worker statuses.
const (
	WorkerActive  = "active"
	WorkerRevoked = "revoked"
)

// Worker is a worker node an admin registered (platform-wide, like a
// tenant: storage key workers/{worker_id}). Its credential is a NATS user
// nkey: the store keeps only the public key, the seed stays with the
// worker. The bus lets an active worker connect with permissions limited
// to its own subjects (internal/workerproto); a revoked one not at all.
type Worker struct {
	WorkerID string            `json:"worker_id"`
	Labels   map[string]string `json:"labels"`
	// PublicKey is the worker's NATS user public nkey ("U...").
	PublicKey string `json:"public_key"`
	// Tenants, when not empty, dedicates the worker to these tenants.
	Tenants   []string   `json:"tenants"`
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// WorkerStore keeps the worker registry. Only platform admins and the
// bus (to know whom to let in) read it.
type WorkerStore interface {
	// CreateWorker inserts w. ErrConflict if the id exists (revoked or
	// not: a revoked id is never reused).
	CreateWorker(ctx context.Context, w Worker) error
	// GetWorker returns ErrNotFound if absent.
	GetWorker(ctx context.Context, workerID string) (Worker, error)
	// ListWorkers lists every worker, revoked ones included, by id.
	ListWorkers(ctx context.Context) ([]Worker, error)
	// RevokeWorker marks the worker revoked at at (idempotent: an already
	// revoked worker keeps its first revoked_at). ErrNotFound if absent.
	RevokeWorker(ctx context.Context, workerID string, at time.Time) (Worker, error)
}

var (
	workerIDRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	labelKeyRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9_.-]{0,62})$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62})$`)
)

// MaxWorkerLabels bounds a worker's labels: a worker pulls from one queue
// per subset of its labels (2^n), so n stays small.
const MaxWorkerLabels = 5

// MaxWorkerTenants bounds the tenants a worker is dedicated to: it pulls
// from one queue per subset of its labels and tenant.
const MaxWorkerTenants = 8

// ValidWorkerID reports whether id is a worker id: lowercase letters,
// digits, _ and -, 1 to 63 characters (it becomes a NATS subject token).
func ValidWorkerID(id string) bool { return workerIDRE.MatchString(id) }

// ValidateLabels checks a label set (a worker's or a placement's); field
// names the request field in the error.
func ValidateLabels(field string, labels map[string]string) error {
	if len(labels) > MaxWorkerLabels {
		return errs.Field(field, "at most %d labels", MaxWorkerLabels)
	}
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) {
			return errs.Field(field, "label key %q: want lowercase letters, digits, _ . - (1-63, starting with a letter or digit)", k)
		}
		if !labelValueRE.MatchString(v) {
			return errs.Field(field+"."+k, "label value %q: want letters, digits, _ . - (1-63, starting with a letter or digit)", v)
		}
	}
	return nil
}

// Validate checks a worker before it is stored.
func (w Worker) Validate() error {
	switch {
	case !ValidWorkerID(w.WorkerID):
		return errs.Field("worker_id", "must be 1-63 lowercase letters, digits, _ or -, starting with a letter or digit")
	case len(w.PublicKey) != 56 || !strings.HasPrefix(w.PublicKey, "U"):
		return errs.Field("public_key", "must be a NATS user public nkey (56 characters starting with U)")
	case w.Status != WorkerActive && w.Status != WorkerRevoked:
		return errs.Field("status", "must be active or revoked")
	}
	if len(w.Tenants) > MaxWorkerTenants {
		return errs.Field("tenants", "at most %d tenants", MaxWorkerTenants)
	}
	for i, t := range w.Tenants {
		if strings.TrimSpace(t) == "" {
			return errs.Field("tenants", "entry %d is empty", i)
		}
		if slices.Contains(w.Tenants[:i], t) {
			return errs.Field("tenants", "tenant %s is listed twice", t)
		}
	}
	return ValidateLabels("labels", w.Labels)
}

// Placement says where an agent's tool calls run: on a worker node whose
// labels include Labels (empty: in the orchestrator). Tools overrides it
// per tool id; an override with no labels keeps that tool in the
// orchestrator.
type Placement struct {
	Labels map[string]string        `json:"labels,omitempty"`
	Tools  map[string]ToolPlacement `json:"tools,omitempty"`
}

// ToolPlacement is one tool's own placement.
type ToolPlacement struct {
	Labels map[string]string `json:"labels"`
}

// AgentPlacement is stored with the agent's defaults (one JSON column,
// no schema change), like AgentApproval.
type AgentPlacement struct {
	Placement *Placement `json:"placement,omitempty"`
}

// LabelsFor returns the labels a call of toolID is placed on (nil: run it
// in the orchestrator).
func (p *Placement) LabelsFor(toolID string) map[string]string {
	if p == nil {
		return nil
	}
	if t, ok := p.Tools[toolID]; ok {
		return t.Labels
	}
	return p.Labels
}
