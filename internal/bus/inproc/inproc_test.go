package inproc_test

import (
	"context"
	"sync"
	"testing"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/bus/bustest"
	"github.com/nexixai/agentos/internal/bus/inproc"
	"github.com/nexixai/agentos/internal/store"
)

func TestConformance(t *testing.T) {
	bustest.Run(t, func(t *testing.T) bustest.Harness {
		log := &memLog{}
		b := &committing{Bus: inproc.New(inproc.Config{History: log}), log: log}
		t.Cleanup(func() { _ = b.Close() })
		return bustest.Harness{Bus: b, Connect: func(t *testing.T) bus.Bus {
			c := &client{Bus: b}
			t.Cleanup(func() { _ = c.Close() })
			return c
		}}
	})
}

// memLog is the store's event log in miniature: the history resumed
// subscriptions replay from.
type memLog struct {
	mu  sync.Mutex
	evs []store.Event
	ids map[string]bool
}

func (l *memLog) ListEvents(_ context.Context, p store.ListEventsParams) ([]store.Event, error) {
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

// committing commits events to the log before publishing them, as the
// orchestrator's commit does with the store.
type committing struct {
	*inproc.Bus
	log *memLog
}

func (c *committing) Publish(ctx context.Context, evs ...store.Event) error {
	for _, e := range evs {
		if err := bus.ValidateEvent(e); err != nil {
			return err
		}
	}
	c.log.mu.Lock()
	if c.log.ids == nil {
		c.log.ids = map[string]bool{}
	}
	for _, e := range evs {
		if !c.log.ids[e.EventID] {
			c.log.ids[e.EventID] = true
			c.log.evs = append(c.log.evs, e)
		}
	}
	c.log.mu.Unlock()
	return c.Bus.Publish(ctx, evs...)
}

// client is another replica's view of the one in-process bus: closing it
// ends what it opened (as the replica's death would), not the bus.
type client struct {
	bus.Bus
	mu      sync.Mutex
	closed  bool
	closers []func()
}

func (c *client) track(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		f()
		return false
	}
	c.closers = append(c.closers, f)
	return true
}

func (c *client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

var errClientClosed = context.Canceled

func (c *client) Publish(ctx context.Context, evs ...store.Event) error {
	if c.isClosed() {
		return errClientClosed
	}
	return c.Bus.Publish(ctx, evs...)
}

func (c *client) Subscribe(ctx context.Context, p bus.SubscribeParams) (bus.Subscription[store.Event], error) {
	s, err := c.Bus.Subscribe(ctx, p)
	if err == nil && !c.track(s.Close) {
		return nil, errClientClosed
	}
	return s, err
}

func (c *client) SubscribeSignals(ctx context.Context) (bus.Subscription[bus.Signal], error) {
	s, err := c.Bus.SubscribeSignals(ctx)
	if err == nil && !c.track(s.Close) {
		return nil, errClientClosed
	}
	return s, err
}

func (c *client) Consume(ctx context.Context, p bus.ConsumeParams) (bus.Consumer, error) {
	cons, err := c.Bus.Consume(ctx, p)
	if err == nil && !c.track(func() { _ = cons.Close() }) {
		return nil, errClientClosed
	}
	return cons, err
}

func (c *client) Close() error {
	c.mu.Lock()
	closers := c.closers
	c.closed, c.closers = true, nil
	c.mu.Unlock()
	for _, f := range closers {
		f()
	}
	return nil
}
