package inproc

import (
	"context"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
)

// queue is one work queue: tasks waiting in FIFO order, tasks delivered
// and not yet acked with their deadlines. An expired delivery goes back
// to the front of the line (it has waited longest).
type queue struct {
	mu       sync.Mutex
	now      func() time.Time
	waiting  []*entry
	inflight map[*entry]struct{}
	changed  chan struct{} // closed and replaced on every change, to wake Next
	closed   bool
}

type entry struct {
	task     bus.Task
	attempts int
	deadline time.Time
	token    int // changes on every delivery; a stale Ack is refused
}

func (b *Bus) queue(name string) *queue {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	q := b.queues[name]
	if q == nil {
		q = &queue{now: time.Now, inflight: map[*entry]struct{}{}, changed: make(chan struct{})}
		b.queues[name] = q
	}
	return q
}

// notify wakes waiting consumers; the caller holds q.mu.
func (q *queue) notify() {
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		q.notify()
	}
}

// Enqueue implements bus.Work.
func (b *Bus) Enqueue(_ context.Context, t bus.Task) error {
	if err := t.Validate(); err != nil {
		return err
	}
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return errClosed
	}
	if !b.tasks.First(t.ID) {
		return nil
	}
	t.Payload = append([]byte(nil), t.Payload...)
	q := b.queue(t.Queue)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waiting = append(q.waiting, &entry{task: t})
	q.notify()
	return nil
}

// Consume implements bus.Work.
func (b *Bus) Consume(_ context.Context, p bus.ConsumeParams) (bus.Consumer, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return nil, errClosed
	}
	return &consumer{q: b.queue(p.Queue), ackWait: p.WithDefaults().AckWait, done: make(chan struct{})}, nil
}

type consumer struct {
	q       *queue
	ackWait time.Duration
	once    sync.Once
	done    chan struct{}
}

func (c *consumer) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

var errConsumerClosed = errs.E(errs.Conflict, "consumer closed")

func (c *consumer) Next(ctx context.Context) (bus.Delivery, error) {
	q := c.q
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, errClosed
		}
		now := q.now()
		// Expired deliveries first: their consumer died or gave up.
		var next time.Time
		for e := range q.inflight {
			if !now.Before(e.deadline) {
				delete(q.inflight, e)
				q.waiting = append([]*entry{e}, q.waiting...)
			} else if next.IsZero() || e.deadline.Before(next) {
				next = e.deadline
			}
		}
		if len(q.waiting) > 0 {
			e := q.waiting[0]
			q.waiting = q.waiting[1:]
			e.attempts++
			e.token++
			e.deadline = now.Add(c.ackWait)
			q.inflight[e] = struct{}{}
			d := &delivery{q: q, e: e, token: e.token, attempt: e.attempts, task: e.task}
			q.mu.Unlock()
			return d, nil
		}
		changed := q.changed
		q.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = next.Sub(now)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-c.done:
			t.Stop()
			return nil, errConsumerClosed
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

type delivery struct {
	q       *queue
	e       *entry
	token   int
	attempt int
	task    bus.Task
}

func (d *delivery) Task() bus.Task { return d.task }
func (d *delivery) Attempt() int   { return d.attempt }

// settle removes the delivery from flight if it is still the current one.
func (d *delivery) settle() error {
	if _, ok := d.q.inflight[d.e]; !ok || d.e.token != d.token {
		return errs.E(errs.Conflict, "task %s was redelivered after its ack wait", d.task.ID)
	}
	delete(d.q.inflight, d.e)
	return nil
}

func (d *delivery) Ack(context.Context) error {
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	return d.settle()
}

func (d *delivery) Nak(_ context.Context, delay time.Duration) error {
	d.q.mu.Lock()
	defer d.q.mu.Unlock()
	if err := d.settle(); err != nil {
		return err
	}
	if delay <= 0 {
		d.q.waiting = append(d.q.waiting, d.e)
		d.q.notify()
		return nil
	}
	// Back in flight with no owner until delay passes: Next moves it to
	// the front of the line then.
	d.e.deadline = d.q.now().Add(delay)
	d.e.token++
	d.q.inflight[d.e] = struct{}{}
	d.q.notify()
	return nil
}
