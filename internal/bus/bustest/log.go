package bustest

import (
	"context"
	"sync"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/store"
)

// Log is the run store's event log in miniature: the History a bus that
// resumes from the store replays from. Commit it with Committing.
type Log struct {
	mu  sync.Mutex
	evs []store.Event
	ids map[string]bool
}

var _ bus.History = (*Log)(nil)

// ListEvents implements bus.History.
func (l *Log) ListEvents(_ context.Context, p store.ListEventsParams) ([]store.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []store.Event
	for _, e := range l.evs {
		if e.TenantID == p.TenantID && e.RunID == p.RunID && e.Sequence > p.AfterSequence && len(out) < p.Limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (l *Log) commit(evs []store.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids == nil {
		l.ids = map[string]bool{}
	}
	for _, e := range evs {
		if !l.ids[e.EventID] {
			l.ids[e.EventID] = true
			l.evs = append(l.evs, e)
		}
	}
}

// Committing returns b whose Publish commits valid events to l first, as
// the orchestrator's commit writes the store before publishing.
func Committing(b bus.Bus, l *Log) bus.Bus { return &committing{Bus: b, log: l} }

type committing struct {
	bus.Bus
	log *Log
}

func (c *committing) Publish(ctx context.Context, evs ...store.Event) error {
	for _, e := range evs {
		if err := bus.ValidateEvent(e); err != nil {
			return err
		}
	}
	c.log.commit(evs)
	return c.Bus.Publish(ctx, evs...)
}
