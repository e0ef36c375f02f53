package bus

import (
	"sync"
	"sync/atomic"
)

// Sink is the bounded buffer behind a Subscription, shared by the
// adapters so that both drop a lagging reader the same way: Offer never
// blocks; when the buffer is full the sink closes as lagged.
type Sink[T any] struct {
	ch      chan T
	quit    chan struct{} // closed first by Close, to end a blocked Send
	once    sync.Once
	mu      sync.Mutex
	closed  bool
	lagged  atomic.Bool // read without mu: a blocked Send holds it
	onClose func()      // called once, outside mu
}

// NewSink returns a sink holding up to n values; onClose (may be nil)
// runs once when the reader closes it, for the adapter to unsubscribe.
// (A sink that Offer closes as lagged does not call it: Offer's caller
// may hold the adapter's lock, and removes the sink itself.)
func NewSink[T any](n int, onClose func()) *Sink[T] {
	return &Sink[T]{ch: make(chan T, n), quit: make(chan struct{}), onClose: onClose}
}

// C implements Subscription.
func (s *Sink[T]) C() <-chan T { return s.ch }

// Lagged implements Subscription.
func (s *Sink[T]) Lagged() bool { return s.lagged.Load() }

// Offer delivers v without blocking. It reports false if the sink is
// closed, or was full and is now closed as lagged.
func (s *Sink[T]) Offer(v T) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	select {
	case s.ch <- v:
		s.mu.Unlock()
		return true
	default:
	}
	s.closed = true
	s.lagged.Store(true)
	close(s.ch)
	s.mu.Unlock()
	return false
}

// Drop closes the sink as lagged although it was not full: the adapter
// lost its feed (e.g. its server died and the consumer could not be made
// again), and the reader must resume from what it handled. Like Offer,
// it does not call onClose.
func (s *Sink[T]) Drop() {
	s.once.Do(func() { close(s.quit) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.lagged.Store(true)
	close(s.ch)
}

// Send delivers v, waiting for the reader: for replaying history, which
// waits in the store (or the stream) at no one's expense. It reports
// false if the sink is closed meanwhile.
func (s *Sink[T]) Send(v T) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	select {
	case s.ch <- v:
		return true
	case <-s.quit:
		return false
	}
}

// Close implements Subscription.
func (s *Sink[T]) Close() {
	s.once.Do(func() { close(s.quit) })
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.ch)
	s.mu.Unlock()
	if s.onClose != nil {
		s.onClose()
	}
}

var _ Subscription[int] = (*Sink[int])(nil)

// Dedupe remembers the last n ids it saw: the in-process dedupe window
// (JetStream's is a time window on the stream instead).
type Dedupe struct {
	mu   sync.Mutex
	seen map[string]struct{}
	ring []string
	next int
}

// NewDedupe remembers up to n ids.
func NewDedupe(n int) *Dedupe {
	return &Dedupe{seen: make(map[string]struct{}, n), ring: make([]string, n)}
}

// First reports whether id is new, and remembers it.
func (d *Dedupe) First(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[id]; ok {
		return false
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.seen, old)
	}
	d.ring[d.next] = id
	d.next = (d.next + 1) % len(d.ring)
	d.seen[id] = struct{}{}
	return true
}
