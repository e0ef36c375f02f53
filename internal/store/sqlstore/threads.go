package sqlstore

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// ThreadTx is the statements of a write transaction that thread
// admission and thread-run endings need (see store.ThreadStore).
type ThreadTx interface {
	// RunThread returns the thread a run was created on ("" for none, or
	// when the run is absent). It reads without locking: a run's thread
	// never changes.
	RunThread(ctx context.Context, tenantID, runID string) (string, error)
	// LockThread holds the thread against concurrent admissions and run
	// endings until the transaction ends, and returns its active run ("" for
	// none). ErrNotFound if absent or in another tenant.
	LockThread(ctx context.Context, tenantID, threadID string) (activeRunID string, err error)
	// SetActiveRun sets (or, with "", clears) the thread's active run.
	SetActiveRun(ctx context.Context, tenantID, threadID, runID string, at time.Time) error
	// AddWaiting puts a run in line behind the thread's active run.
	AddWaiting(ctx context.Context, tenantID, threadID, runID string, priority int, at time.Time) error
	// FirstWaiting returns the run first in line ("" when none).
	FirstWaiting(ctx context.Context, tenantID, threadID string) (runID string, priority int, err error)
	// RemoveWaiting takes a run out of the line (absent is not an error).
	RemoveWaiting(ctx context.Context, tenantID, threadID, runID string) error
	// RunTurn reads what a run's turn is made of: its input, whether it
	// ever started, and its steps in order (as written so far in this
	// transaction).
	RunTurn(ctx context.Context, tenantID, runID string) (store.RunInput, bool, []store.Step, error)
	// LastMessageSeq returns the thread's highest message seq (0 for none).
	LastMessageSeq(ctx context.Context, tenantID, threadID string) (int64, error)
	// InsertMessage appends one message with its seq set.
	InsertMessage(ctx context.Context, m store.ThreadMessage) error
	// HasWaiting reports whether runs wait in the thread's line.
	HasWaiting(ctx context.Context, tenantID, threadID string) (bool, error)
	// DeleteThreadRows deletes the thread's row, messages and line.
	DeleteThreadRows(ctx context.Context, tenantID, threadID string) error
}

// endingThread is the thread of a run a change makes terminal, locked:
// its id ("" for none) and its active run as locked.
type endingThread struct {
	id, active string
}

// threadOfEndingRun returns the thread of the run c makes terminal (none
// if c does not, or the run has no thread), and locks the thread first: a
// thread is always locked before its runs (as in admitOnThread), so the
// two never wait on each other in opposite orders.
func threadOfEndingRun(ctx context.Context, tx Tx, c store.RunChange, u *RunUpdate) (endingThread, error) {
	if u == nil || !store.RunStatus(u.Status).Terminal() {
		return endingThread{}, nil
	}
	threadID, err := tx.RunThread(ctx, c.TenantID, c.RunID)
	if err != nil || threadID == "" {
		return endingThread{}, err
	}
	active, err := tx.LockThread(ctx, c.TenantID, threadID)
	if errors.Is(err, errs.ErrNotFound) {
		return endingThread{}, nil // deleted: there is nothing left to append to
	} else if err != nil {
		return endingThread{}, err
	}
	return endingThread{id: threadID, active: active}, nil
}

// endThreadRun is what a thread's run that becomes terminal leaves
// behind, in the transaction that makes it terminal: its turn appended
// (if it started), and, when it was the active run, the next waiting run
// made active and queued; when it was waiting, its place in line given up.
func endThreadRun(ctx context.Context, tx Tx, tenantID string, th endingThread, runID string, keepTurn bool, now time.Time) error {
	threadID, active := th.id, th.active
	if keepTurn {
		if err := appendTurn(ctx, tx, tenantID, threadID, runID, now); err != nil {
			return err
		}
	}
	if active != runID {
		return tx.RemoveWaiting(ctx, tenantID, threadID, runID)
	}
	next, priority, err := tx.FirstWaiting(ctx, tenantID, threadID)
	if err != nil {
		return err
	}
	if next != "" {
		if err := tx.RemoveWaiting(ctx, tenantID, threadID, next); err != nil {
			return err
		}
		if err := tx.Enqueue(ctx, tenantID, next, priority, now); err != nil {
			return err
		}
	}
	return tx.SetActiveRun(ctx, tenantID, threadID, next, now)
}

// appendTurn appends a run's turn (store.TurnMessages) to its thread,
// nothing when the run never started.
func appendTurn(ctx context.Context, tx Tx, tenantID, threadID, runID string, now time.Time) error {
	input, started, steps, err := tx.RunTurn(ctx, tenantID, runID)
	if err != nil || !started {
		return err
	}
	seq, err := tx.LastMessageSeq(ctx, tenantID, threadID)
	if err != nil {
		return err
	}
	for _, m := range store.TurnMessages(runID, input, steps) {
		seq++
		m.TenantID, m.ThreadID, m.Seq, m.MessageID, m.CreatedAt = tenantID, threadID, seq, ids.New("msg_"), now
		if err := tx.InsertMessage(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// admitOnThread decides, under the thread's lock, what the new run nr
// does on its thread (nothing when it has none): with no active run it
// becomes the active run; otherwise its multitask strategy applies:
// reject (conflict wrapping store.ErrThreadBusy), enqueue (it waits in
// line, start=false), interrupt or rollback (the active run is canceled
// here, with its turn kept or discarded, and the new run becomes active).
func admitOnThread(ctx context.Context, tx Tx, nr NewRun, priority int) (start bool, interrupted *store.Event, err error) {
	r := nr.Run
	if r.ThreadID == "" {
		return true, nil, nil
	}
	strategy := r.MultitaskStrategy
	if !store.ValidMultitaskStrategy(strategy) {
		return false, nil, errs.Field("multitask_strategy", "must be reject, enqueue, interrupt or rollback, got %q", strategy)
	}
	active, err := tx.LockThread(ctx, r.TenantID, r.ThreadID)
	if err != nil {
		return false, nil, err
	}
	if active != "" {
		// Every ending goes through applyRunChange, which releases the
		// thread; should a run end some other way, the thread is not
		// stuck behind it.
		st, err := tx.LockRun(ctx, r.TenantID, active)
		if err != nil && !errors.Is(err, errs.ErrNotFound) {
			return false, nil, err
		}
		if err != nil || store.RunStatus(st.Status).Terminal() {
			active = ""
		}
	}
	if active == "" {
		return true, nil, tx.SetActiveRun(ctx, r.TenantID, r.ThreadID, r.RunID, nr.Now)
	}
	switch strategy {
	case store.MultitaskReject:
		return false, nil, errs.Wrap(errs.Conflict, store.ErrThreadBusy,
			"thread %s has an active run %s (multitask_strategy=reject)", r.ThreadID, active).
			WithDetails(map[string]any{"thread_id": r.ThreadID, "active_run_id": active, "multitask_strategy": strategy})
	case store.MultitaskEnqueue:
		return false, nil, tx.AddWaiting(ctx, r.TenantID, r.ThreadID, r.RunID, priority, nr.Now)
	}
	ev, err := cancelActive(ctx, tx, nr, active)
	if err != nil {
		return false, nil, err
	}
	if strategy == store.MultitaskInterrupt {
		if err := appendTurn(ctx, tx, r.TenantID, r.ThreadID, active, nr.Now); err != nil {
			return false, nil, err
		}
	}
	return true, ev, tx.SetActiveRun(ctx, r.TenantID, r.ThreadID, r.RunID, nr.Now)
}

// cancelActive cancels the thread's active run for nr (interrupt or
// rollback): status canceled and its run.canceled event, from
// nr.InterruptEvent.
func cancelActive(ctx context.Context, tx Tx, nr NewRun, runID string) (*store.Event, error) {
	st, err := tx.LockRun(ctx, nr.Run.TenantID, runID)
	if err != nil {
		return nil, err
	}
	if store.RunStatus(st.Status).Terminal() {
		return nil, nil // cannot happen: ending a run clears it as active
	}
	now := nr.Now
	if err := tx.UpdateRun(ctx, nr.Run.TenantID, runID, RunUpdate{StatusOnly: true, Status: string(store.RunCanceled),
		CompletedAt: &now}); err != nil {
		return nil, err
	}
	tmpl := nr.InterruptEvent
	if tmpl.Type == "" {
		tmpl.Type = store.EventRunCanceled
	}
	tmpl.EventID = ""
	evs := SequenceEvents(store.RunChange{TenantID: nr.Run.TenantID, RunID: runID, Events: []store.Event{tmpl}},
		st.AgentID, st.LastSequence, now)
	ev := evs[0]
	ev.AgentID = st.AgentID
	if err := tx.InsertEvent(ctx, ev); err != nil {
		return nil, err
	}
	if err := tx.SetLastSequence(ctx, nr.Run.TenantID, runID, ev.Sequence); err != nil {
		return nil, err
	}
	return &ev, nil
}

// DefaultMessageLimit and MaxMessageLimit bound a page of thread messages
// (the API's pages are at most 1000, plus the one that tells whether a
// next page exists).
const (
	DefaultMessageLimit = 100
	MaxMessageLimit     = 10000
)

// MessageLimit is Limit for thread messages.
func MessageLimit(n int) int { return Limit(n, DefaultMessageLimit, MaxMessageLimit) }

// EncodeThread validates t and encodes its metadata column (never NULL:
// no metadata is {}).
func EncodeThread(t store.Thread) (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	if t.Metadata == nil {
		return "{}", nil
	}
	return ToJSON("metadata", t.Metadata)
}

// DecodeThread decodes a thread's metadata column into t (an empty map,
// not nil, when there is none).
func DecodeThread(t *store.Thread, metadata []byte) error {
	t.Metadata = map[string]string{}
	return FromJSON(metadata, &t.Metadata)
}

// ValidateListThreads checks a list's tenant and metadata filter.
func ValidateListThreads(p store.ListThreadsParams) error {
	if err := store.Required("tenant_id", p.TenantID); err != nil {
		return err
	}
	return store.ValidateThreadMetadata("metadata", p.Metadata)
}

// SortedKeys returns m's keys in order (stable SQL text per filter).
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// PageThreads is Page for threads.
func PageThreads(ts []store.Thread, limit int) ([]store.Thread, string) {
	if len(ts) <= limit {
		return ts, ""
	}
	ts = ts[:limit]
	return ts, ts[limit-1].ThreadID
}

// PrepareDeleteThread validates p and prepares its audit record (nil when
// there is none).
func PrepareDeleteThread(p store.DeleteThreadParams, now func() time.Time) (*AuditRow, error) {
	if err := store.Required("tenant_id", p.TenantID, "thread_id", p.ThreadID); err != nil {
		return nil, err
	}
	if p.Audit == nil {
		return nil, nil
	}
	row, err := PrepareAudit(*p.Audit, now)
	return &row, err
}

// DeleteThread deletes a thread in tx: locked, refused (conflict) while a
// run of it is active or waiting, then its rows and the audit record.
func DeleteThread(ctx context.Context, tx Tx, p store.DeleteThreadParams, audit *AuditRow) error {
	active, err := tx.LockThread(ctx, p.TenantID, p.ThreadID)
	if err != nil {
		return err
	}
	waiting, err := tx.HasWaiting(ctx, p.TenantID, p.ThreadID)
	if err != nil {
		return err
	}
	if active != "" || waiting {
		return errs.E(errs.Conflict, "thread %s has an active run %s; cancel it before deleting the thread", p.ThreadID, active).
			WithDetails(map[string]any{"thread_id": p.ThreadID, "active_run_id": active})
	}
	if err := tx.DeleteThreadRows(ctx, p.TenantID, p.ThreadID); err != nil {
		return err
	}
	if audit != nil {
		_, err = tx.AppendAudit(ctx, []AuditRow{*audit})
	}
	return err
}
