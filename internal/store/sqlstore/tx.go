package sqlstore

import (
	"context"
	"time"

	"github.com/nexixai/agentos/internal/store"
)

// Tx is one write transaction of an adapter, as the shared logic below needs
// it: each method is a statement (or two) in the adapter's SQL dialect, and
// returns errors already mapped (errs codes). The logic around the
// statements, the same for every dialect, lives here once.
type Tx interface {
	// LockRun reads what a run change checks and builds on, and holds the
	// run against concurrent changes until the transaction ends.
	// ErrNotFound if the run is absent or in another tenant.
	LockRun(ctx context.Context, tenantID, runID string) (RunState, error)
	// UpdateRun writes u to the run (only Status, CompletedAt, Output and
	// Error when u.StatusOnly).
	UpdateRun(ctx context.Context, tenantID, runID string, u RunUpdate) error
	// PutStep inserts the step or replaces it by StepID.
	PutStep(ctx context.Context, s store.Step) error
	// InsertEvent appends one event with its sequence already set.
	InsertEvent(ctx context.Context, e store.Event) error
	// SetLastSequence records the run's last event sequence, for dialects
	// that keep it in the run row rather than reading it from the events.
	SetLastSequence(ctx context.Context, tenantID, runID string, seq int64) error
	// InsertRun inserts a new run row with its encoded JSON columns.
	InsertRun(ctx context.Context, r store.Run, c RunColumns) error
	// Enqueue adds the run's queue entry (CreateRun, for a queued run).
	Enqueue(ctx context.Context, tenantID, runID string, priority int, at time.Time) error
	// PutApproval inserts the approval or replaces it (by tenant, run and
	// tool call id).
	PutApproval(ctx context.Context, a store.Approval) error
	// Dequeue removes the run's queue entry, if any.
	Dequeue(ctx context.Context, tenantID, runID string) error
	// InsertWebhookTargets records a new run's webhook targets, numbered
	// from 0 in order.
	InsertWebhookTargets(ctx context.Context, tenantID, runID string, targets []store.WebhookTarget) error
	// WebhookTargets returns a run's webhook targets in order.
	WebhookTargets(ctx context.Context, tenantID, runID string) ([]store.WebhookTarget, error)
	// InsertDeliveries adds pending deliveries to the outbox.
	InsertDeliveries(ctx context.Context, ds []store.WebhookDelivery) error
	// AppendAudit chains prepared records after the chain's last record
	// (ChainAll) and inserts them; it must be the last statement of a
	// transaction that locks anything.
	AppendAudit(ctx context.Context, rows []AuditRow) ([]store.AuditRecord, error)

	// LockBudgetWindow holds the tenant's budget window against concurrent
	// reservations until the transaction ends.
	LockBudgetWindow(ctx context.Context, tenantID, window string, start time.Time) error
	// BudgetUsed sums the window's settled and reserved amounts.
	BudgetUsed(ctx context.Context, tenantID, window string, start time.Time) (store.BudgetUsage, error)
	// InsertReservation records a granted reservation, unsettled.
	InsertReservation(ctx context.Context, r store.Reservation) error

	ThreadTx
}

// Begin runs fn in one write transaction of an adapter and commits it when
// fn returns nil. An adapter may run fn more than once (a retried
// transaction), so fn sets its results afresh on every call.
type Begin func(ctx context.Context, fn func(Tx) error) error

// Writes are the store.Store methods written once for both adapters, over
// an adapter's transactions: an adapter embeds them (NewWrites) and so
// implements ApplyRunChange, AppendAudit, AppendAudits and ReserveBudget.
type Writes struct {
	begin Begin
	now   func() time.Time
}

// NewWrites returns the shared methods over begin's transactions, with now
// the adapter's clock (UTC, microseconds).
func NewWrites(begin Begin, now func() time.Time) Writes { return Writes{begin: begin, now: now} }

// ApplyRunChange commits c atomically: the run is locked, the attempt
// fence and the status compare-and-set are checked, the run columns
// written, the steps upserted and the events appended with gapless
// sequences. It returns the appended events.
func (w Writes) ApplyRunChange(ctx context.Context, c store.RunChange) ([]store.Event, error) {
	return applyRunChange(ctx, w.begin, c, w.now())
}

// AppendAudit appends r to the global chain: Seq = last+1, PrevHash = the
// last record's Hash ("" for the first), then the record's canonical bytes
// (store.CanonicalAudit) are stored in the record column and Hash is their
// SHA-256. AuditID (ids.New("aud_")) and Time (now) are filled when empty;
// Time is kept UTC with microsecond precision.
func (w Writes) AppendAudit(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error) {
	out, err := w.AppendAudits(ctx, []store.AuditRecord{r})
	if err != nil {
		return store.AuditRecord{}, err
	}
	return out[0], nil
}

// AppendAudits appends rs in order in one transaction (see AppendAudit).
// The records are prepared before it begins: a single-writer adapter must
// not spend its write lock encoding.
func (w Writes) AppendAudits(ctx context.Context, rs []store.AuditRecord) ([]store.AuditRecord, error) {
	rows, err := PrepareAudits(rs, w.now)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	var out []store.AuditRecord
	err = w.begin(ctx, func(tx Tx) error {
		var err error
		out, err = tx.AppendAudit(ctx, rows)
		return err
	})
	return out, err
}

// ReserveBudget checks the window's settled and reserved usage plus the
// request against p's limits and records the reservation, in one
// transaction that holds the window's lock throughout, so concurrent
// reservers never overshoot. Over a limit: quota_exceeded with details
// limit, used, requested, window and resource ("tokens" or "cost_usd").
func (w Writes) ReserveBudget(ctx context.Context, p store.ReserveParams) (store.Reservation, error) {
	res, err := NewReservation(p)
	if err != nil {
		return store.Reservation{}, err
	}
	err = w.begin(ctx, func(tx Tx) error {
		if err := tx.LockBudgetWindow(ctx, res.TenantID, res.Window, res.WindowStart); err != nil {
			return err
		}
		used, err := tx.BudgetUsed(ctx, res.TenantID, res.Window, res.WindowStart)
		if err != nil {
			return err
		}
		if err := CheckBudget(p, used); err != nil {
			return err
		}
		return tx.InsertReservation(ctx, res)
	})
	if err != nil {
		return store.Reservation{}, err
	}
	return res, nil
}

// RunState is a run as a change finds it.
type RunState struct {
	Status       string
	AgentID      string
	Attempt      int
	LastSequence int64 // 0 before the first event
}

// RunUpdate is the run columns a RunChange writes, by name: all of them, or
// with StatusOnly only Status, CompletedAt, Output and Error.
type RunUpdate struct {
	StatusOnly bool
	Status     string
	// StartedAt and CompletedAt are UTC with microsecond precision; nil is NULL.
	StartedAt, CompletedAt *time.Time
	// Summary is JSON text; Output and Error are JSON text or nil (NULL).
	Summary       string
	Output, Error any
	Attempt       int
}

// PrepareRunChange validates c and returns the run columns it writes, nil
// when the change carries no run.
func PrepareRunChange(c store.RunChange) (*RunUpdate, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Run == nil {
		return nil, nil
	}
	summary, err := ToJSON("summary", c.Run.Summary)
	if err != nil {
		return nil, err
	}
	output, errBody, err := EncodeRunResult(*c.Run)
	if err != nil {
		return nil, err
	}
	return &RunUpdate{StatusOnly: c.StatusOnly, Status: string(c.Run.Status), StartedAt: UTCPtr(c.Run.StartedAt),
		CompletedAt: UTCPtr(c.Run.CompletedAt), Summary: summary, Output: output, Error: errBody,
		Attempt: c.Run.Attempt}, nil
}

// applyRunChange commits c in one transaction of begin: it locks the run,
// checks the attempt fence and the status compare-and-set, writes the run
// columns, upserts the steps and appends the events with gapless sequences
// after the last one. It returns the appended events (empty, not nil, when
// there are none).
func applyRunChange(ctx context.Context, begin Begin, c store.RunChange, now time.Time) ([]store.Event, error) {
	u, err := PrepareRunChange(c)
	if err != nil {
		return nil, err
	}
	var out []store.Event
	err = begin(ctx, func(tx Tx) error {
		out = nil
		thread, err := threadOfEndingRun(ctx, tx, c, u)
		if err != nil {
			return err
		}
		st, err := tx.LockRun(ctx, c.TenantID, c.RunID)
		if err != nil {
			return err
		}
		if err := CheckRunChange(c, st.Status, st.Attempt); err != nil {
			return err
		}
		if u != nil {
			if err := tx.UpdateRun(ctx, c.TenantID, c.RunID, *u); err != nil {
				return err
			}
		}
		for _, s := range c.Steps {
			s.TenantID, s.RunID = c.TenantID, c.RunID
			s.StartedAt, s.CompletedAt = UTC(s.StartedAt), UTCPtr(s.CompletedAt)
			if err := tx.PutStep(ctx, s); err != nil {
				return err
			}
		}
		if c.Approval != nil {
			a := *c.Approval
			a.TenantID, a.RunID = c.TenantID, c.RunID
			if err := tx.PutApproval(ctx, a); err != nil {
				return err
			}
		}
		if c.Dequeue {
			if err := tx.Dequeue(ctx, c.TenantID, c.RunID); err != nil {
				return err
			}
		}
		if c.Enqueue {
			if err := tx.Enqueue(ctx, c.TenantID, c.RunID, c.EnqueuePriority, now); err != nil {
				return err
			}
		}
		evs := SequenceEvents(c, st.AgentID, st.LastSequence, now)
		for _, e := range evs {
			if err := tx.InsertEvent(ctx, e); err != nil {
				return err
			}
		}
		if len(evs) > 0 {
			if err := tx.SetLastSequence(ctx, c.TenantID, c.RunID, evs[len(evs)-1].Sequence); err != nil {
				return err
			}
			if err := outbox(ctx, tx, nil, evs, now); err != nil {
				return err
			}
		}
		out = evs
		if thread.id != "" && !store.RunStatus(st.Status).Terminal() {
			return endThreadRun(ctx, tx, c.TenantID, thread, c.RunID, true, now)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Admit writes a new run inside tx, once its idempotency key (if any) is
// claimed: the run row, its first event, its queue entry when it is queued
// and its audit record, last.
func Admit(ctx context.Context, tx Tx, nr NewRun, priority int) (store.CreateRunResult, error) {
	start, interrupted, err := admitOnThread(ctx, tx, nr, priority)
	if err != nil {
		return store.CreateRunResult{}, err
	}
	if err := tx.InsertRun(ctx, nr.Run, nr.Columns); err != nil {
		return store.CreateRunResult{}, err
	}
	if err := tx.InsertEvent(ctx, nr.FirstEvent); err != nil {
		return store.CreateRunResult{}, err
	}
	if len(nr.Webhooks) > 0 {
		if err := tx.InsertWebhookTargets(ctx, nr.Run.TenantID, nr.Run.RunID, nr.Webhooks); err != nil {
			return store.CreateRunResult{}, err
		}
		if err := outbox(ctx, tx, nr.Webhooks, []store.Event{nr.FirstEvent}, nr.Now); err != nil {
			return store.CreateRunResult{}, err
		}
	}
	if nr.Run.Status == store.RunQueued && start {
		if err := tx.Enqueue(ctx, nr.Run.TenantID, nr.Run.RunID, priority, nr.Now); err != nil {
			return store.CreateRunResult{}, err
		}
	}
	if nr.Audit != nil {
		if _, err := tx.AppendAudit(ctx, []AuditRow{*nr.Audit}); err != nil {
			return store.CreateRunResult{}, err
		}
	}
	return store.CreateRunResult{Run: nr.Run, Interrupted: interrupted}, nil
}
