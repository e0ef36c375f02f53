// Package events fans committed run events out to live subscribers (SSE
// streams) and encodes them as Server-Sent Events. The store is the source
// of truth: subscribers replay from it and use the hub only for what comes
// after, deduplicating by sequence.
package events

import (
	"sync"

	"github.com/nexixai/agentos/internal/store"
)

// Hub is the in-process event bus: Publish after commit, Subscribe per run.
// A slow subscriber never blocks publishers: when its buffer is full it is
// marked lagged and must re-read from the store.
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[*Subscription]struct{} // key: tenant/run
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[string]map[*Subscription]struct{}{}} }

// Subscription receives a run's events published after it was made.
type Subscription struct {
	C      chan store.Event
	hub    *Hub
	key    string
	mu     sync.Mutex
	lagged bool
}

// Lagged reports (and clears) whether events were dropped because the
// subscriber fell behind; the reader must then re-read from the store.
func (s *Subscription) Lagged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lagged
	s.lagged = false
	return l
}

// Close unsubscribes.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	if m, ok := s.hub.subs[s.key]; ok {
		delete(m, s)
		if len(m) == 0 {
			delete(s.hub.subs, s.key)
		}
	}
}

func key(tenantID, runID string) string { return tenantID + "/" + runID }

// SubscriberBuffer is how many events a subscription holds before it is
// marked lagged. Kept small because every open stream has one (a
// store.Event is ~200 bytes, so 256 of them cost ~50 KB a stream, 250 MB
// for 5,000 streams); a run's events mostly come a few at a time, and a
// lagged stream catches up from the store without loss.
const SubscriberBuffer = 32

// Subscribe starts receiving a run's events. Call Close when done.
func (h *Hub) Subscribe(tenantID, runID string) *Subscription {
	s := &Subscription{C: make(chan store.Event, SubscriberBuffer), hub: h, key: key(tenantID, runID)}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.subs[s.key]
	if m == nil {
		m = map[*Subscription]struct{}{}
		h.subs[s.key] = m
	}
	m[s] = struct{}{}
	return s
}

// Publish delivers committed events to the run's subscribers.
func (h *Hub) Publish(evs ...store.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range evs {
		for s := range h.subs[key(e.TenantID, e.RunID)] {
			select {
			case s.C <- e:
			default:
				s.mu.Lock()
				s.lagged = true
				s.mu.Unlock()
			}
		}
	}
}

// Subscribers returns the number of live subscriptions (for metrics).
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.subs {
		n += len(m)
	}
	return n
}
