// Package inproc is the bus for one process (the embedded default): maps
// of subscribers guarded by a lock, bounded channels, no broker, no
// serialisation. Work queues live in memory: they survive a consumer's
// death but not the process (the embedded node's durable run queue is the
// store's queue table, not this).
package inproc

import (
	"context"
	"sync"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// Config configures the bus. The zero value works, without Resume.
type Config struct {
	// History replays resumed subscriptions (the node's store). Without
	// it, Subscribe with Resume fails with errs.InvalidRequest.
	History bus.History
	// DedupeIDs is how many recent event ids (of events that had
	// subscribers) and task ids are remembered to drop duplicates
	// (default 4096: in one process a retry follows its failure at once,
	// and a small window stays in cache).
	DedupeIDs int
}

// Bus is the in-process bus.
type Bus struct {
	cfg    Config
	events *bus.Dedupe
	tasks  *bus.Dedupe

	mu      sync.RWMutex
	closed  bool
	runs    map[runKey]sinkSet
	tenants map[string]sinkSet
	signals map[*bus.Sink[bus.Signal]]struct{}
	resumes map[*resumed]struct{}

	qmu    sync.Mutex
	queues map[string]*queue
}

type runKey struct{ tenant, run string }

var _ bus.Bus = (*Bus)(nil)

// New returns an empty bus.
func New(cfg Config) *Bus {
	if cfg.DedupeIDs <= 0 {
		cfg.DedupeIDs = 1 << 12
	}
	return &Bus{
		cfg: cfg, events: bus.NewDedupe(cfg.DedupeIDs), tasks: bus.NewDedupe(cfg.DedupeIDs),
		runs:    map[runKey]sinkSet{},
		tenants: map[string]sinkSet{},
		signals: map[*bus.Sink[bus.Signal]]struct{}{},
		resumes: map[*resumed]struct{}{},
		queues:  map[string]*queue{},
	}
}

var errClosed = errs.E(errs.DependencyUnavailable, "bus closed")

// Publish implements bus.Events.
func (b *Bus) Publish(_ context.Context, evs ...store.Event) error {
	for _, e := range evs {
		if err := bus.ValidateEvent(e); err != nil {
			return err
		}
	}
	var lagged []lag
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return errClosed
	}
	for _, e := range evs {
		runSubs, tenantSubs := b.runs[runKey{e.TenantID, e.RunID}], b.tenants[e.TenantID]
		// Only an event someone saw needs remembering: a subscriber that
		// missed the first publish sees the second one once. This keeps
		// publishing to runs nobody watches as cheap as the hub.
		if len(runSubs)+len(tenantSubs) == 0 || !b.events.First(e.EventID) {
			continue
		}
		for s, after := range runSubs {
			if e.Sequence <= after {
				continue
			}
			if !s.Offer(e) {
				lagged = append(lagged, lag{e, s, false})
			}
		}
		for s := range tenantSubs {
			if !s.Offer(e) {
				lagged = append(lagged, lag{e, s, true})
			}
		}
	}
	b.mu.RUnlock()
	if len(lagged) > 0 {
		b.mu.Lock()
		for _, l := range lagged {
			if l.tenant {
				removeFrom(b.tenants, l.e.TenantID, l.s)
			} else {
				removeFrom(b.runs, runKey{l.e.TenantID, l.e.RunID}, l.s)
			}
		}
		b.mu.Unlock()
	}
	return nil
}

// Watched reports whether an event of the tenant's run has a subscriber
// now (of the run or of the tenant): a bus feeding this one from a broker
// (bus/nats's local fan-out) skips decoding the others.
func (b *Bus) Watched(tenant, run string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.runs[runKey{tenant, run}])+len(b.tenants[tenant]) > 0
}

// lag is a subscription that Publish dropped, to unsubscribe.
type lag struct {
	e      store.Event
	s      *bus.Sink[store.Event]
	tenant bool
}

// Subscribe implements bus.Events.
func (b *Bus) Subscribe(ctx context.Context, p bus.SubscribeParams) (bus.Subscription[store.Event], error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.Resume && b.cfg.History == nil {
		return nil, errs.Field("resume", "needs a history (the store) in this bus's config")
	}
	live, err := b.subscribe(p.TenantID, p.RunID, p.After)
	if err != nil || !p.Resume {
		return live, err
	}
	return b.resume(ctx, p, live), nil
}

func (b *Bus) subscribe(tenant, run string, after int64) (*bus.Sink[store.Event], error) {
	var s *bus.Sink[store.Event]
	if run == "" {
		s = bus.NewSink[store.Event](bus.SubscriberBuffer, func() { b.mu.Lock(); removeFrom(b.tenants, tenant, s); b.mu.Unlock() })
	} else {
		k := runKey{tenant, run}
		s = bus.NewSink[store.Event](bus.SubscriberBuffer, func() { b.mu.Lock(); removeFrom(b.runs, k, s); b.mu.Unlock() })
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	if run == "" {
		addTo(b.tenants, tenant, s, 0)
	} else {
		addTo(b.runs, runKey{tenant, run}, s, after)
	}
	return s, nil
}

// sinkSet maps each subscription to the sequence it has already seen
// (SubscribeParams.After): a run's live subscription skips events at or
// below it, which a feed from a broker (bus/nats's local fan-out) may
// still carry when the subscription is made.
type sinkSet = map[*bus.Sink[store.Event]]int64

func addTo[K comparable](m map[K]sinkSet, k K, s *bus.Sink[store.Event], after int64) {
	set := m[k]
	if set == nil {
		set = sinkSet{}
		m[k] = set
	}
	set[s] = after
}

// removeFrom reports whether s was in m[k]; the caller holds b.mu.
func removeFrom[K comparable](m map[K]sinkSet, k K, s *bus.Sink[store.Event]) bool {
	set, ok := m[k]
	if !ok {
		return false
	}
	if _, ok := set[s]; !ok {
		return false
	}
	delete(set, s)
	if len(set) == 0 {
		delete(m, k)
	}
	return true
}

// resumed is a subscription that replays the history after a sequence,
// then forwards its live subscription's later events. Its pump blocks on
// the reader while replaying (the history is not going anywhere) and the
// live subscription buffers meanwhile: a reader too slow for that is
// dropped as lagged, like any other.
type resumed struct {
	out    chan store.Event
	live   *bus.Sink[store.Event]
	stop   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	lagged bool
	done   chan struct{}
}

func (r *resumed) C() <-chan store.Event { return r.out }

func (r *resumed) Lagged() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lagged
}

func (r *resumed) Close() {
	r.once.Do(func() { close(r.stop) })
	r.live.Close()
	<-r.done
}

// historyPage is how many events one History read returns.
const historyPage = 500

func (b *Bus) resume(ctx context.Context, p bus.SubscribeParams, live *bus.Sink[store.Event]) *resumed {
	r := &resumed{out: make(chan store.Event), live: live, stop: make(chan struct{}), done: make(chan struct{})}
	b.mu.Lock()
	b.resumes[r] = struct{}{}
	b.mu.Unlock()
	// The pump outlives Subscribe's ctx (a request context may be shorter
	// than the subscription) but not its values' cancellation of the reads.
	hctx := context.WithoutCancel(ctx)
	go func() {
		defer close(r.done)
		defer close(r.out)
		defer func() {
			b.mu.Lock()
			delete(b.resumes, r)
			b.mu.Unlock()
		}()
		send := func(e store.Event) bool {
			select {
			case r.out <- e:
				return true
			case <-r.stop:
				return false
			}
		}
		last := p.After
		for {
			evs, err := b.cfg.History.ListEvents(hctx, store.ListEventsParams{TenantID: p.TenantID, RunID: p.RunID, AfterSequence: last, Limit: historyPage})
			if err != nil {
				// The reader resumes again from what it got, as after a lag.
				r.mu.Lock()
				r.lagged = true
				r.mu.Unlock()
				live.Close()
				return
			}
			for _, e := range evs {
				if !send(e) {
					return
				}
				last = e.Sequence
			}
			if len(evs) < historyPage {
				break
			}
		}
		for e := range live.C() {
			if e.Sequence <= last {
				continue // replayed already
			}
			if !send(e) {
				return
			}
			last = e.Sequence
		}
		if live.Lagged() {
			r.mu.Lock()
			r.lagged = true
			r.mu.Unlock()
		}
	}()
	return r
}

// Signal implements bus.Signals.
func (b *Bus) Signal(_ context.Context, s bus.Signal) error {
	if err := s.Validate(); err != nil {
		return err
	}
	var lagged []*bus.Sink[bus.Signal]
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return errClosed
	}
	for sub := range b.signals {
		if !sub.Offer(s) {
			lagged = append(lagged, sub)
		}
	}
	b.mu.RUnlock()
	if len(lagged) > 0 {
		b.mu.Lock()
		for _, sub := range lagged {
			delete(b.signals, sub)
		}
		b.mu.Unlock()
	}
	return nil
}

// SubscribeSignals implements bus.Signals.
func (b *Bus) SubscribeSignals(context.Context) (bus.Subscription[bus.Signal], error) {
	var s *bus.Sink[bus.Signal]
	s = bus.NewSink[bus.Signal](bus.SubscriberBuffer, func() {
		b.mu.Lock()
		delete(b.signals, s)
		b.mu.Unlock()
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	b.signals[s] = struct{}{}
	return s, nil
}

// Close implements bus.Bus: every subscription ends (not lagged) and
// every consumer's Next returns.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	var evSinks []*bus.Sink[store.Event]
	for _, m := range b.runs {
		for s := range m {
			evSinks = append(evSinks, s)
		}
	}
	for _, m := range b.tenants {
		for s := range m {
			evSinks = append(evSinks, s)
		}
	}
	var sigSinks []*bus.Sink[bus.Signal]
	for s := range b.signals {
		sigSinks = append(sigSinks, s)
	}
	var rs []*resumed
	for r := range b.resumes {
		rs = append(rs, r)
	}
	b.mu.Unlock()
	for _, s := range evSinks {
		s.Close()
	}
	for _, s := range sigSinks {
		s.Close()
	}
	for _, r := range rs {
		r.once.Do(func() { close(r.stop) })
	}
	b.qmu.Lock()
	for _, q := range b.queues {
		q.close()
	}
	b.qmu.Unlock()
	return nil
}
