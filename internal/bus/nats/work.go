package nats

import (
	"context"
	"errors"
	"sync"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
)

// tenantHeader carries a task's tenant.
const tenantHeader = "Agentos-Tenant"

func (b *Bus) workSubject(queue string) string { return b.cfg.Namespace + ".work." + queue }

// Enqueue implements bus.Work.
func (b *Bus) Enqueue(ctx context.Context, t bus.Task) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if b.isClosed() {
		return errClosed
	}
	m := natsio.NewMsg(b.workSubject(t.Queue))
	m.Header.Set(jetstream.MsgIDHeader, t.ID)
	m.Header.Set(tenantHeader, t.TenantID)
	m.Data = t.Payload
	_, err := b.js.PublishMsg(ctx, m)
	return interpret(err, "enqueue task %s", t.ID)
}

// Consume implements bus.Work. All consumers of a queue bind to one
// durable consumer named after it; the queue's AckWait is the last one
// a consumer asked for.
func (b *Bus) Consume(ctx context.Context, p bus.ConsumeParams) (bus.Consumer, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p = p.WithDefaults()
	if b.isClosed() {
		return nil, errClosed
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, b.workStream, jetstream.ConsumerConfig{
		Durable: "work-" + p.Queue, FilterSubject: b.workSubject(p.Queue),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: p.AckWait, MaxDeliver: -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, interpret(err, "consume queue %s", p.Queue)
	}
	c := &consumer{b: b, queue: p.Queue, cons: cons, done: make(chan struct{})}
	if !b.track(c, func() { _ = c.Close() }) {
		return nil, errClosed
	}
	return c, nil
}

type consumer struct {
	b     *Bus
	queue string
	cons  jetstream.Consumer
	once  sync.Once
	done  chan struct{}
}

// Close implements bus.Consumer. Unacked deliveries stay with the
// durable consumer and are redelivered after AckWait.
func (c *consumer) Close() error {
	c.once.Do(func() { close(c.done) })
	c.b.untrack(c)
	return nil
}

// fetchWait bounds one pull request, so that Next notices Close soon.
const fetchWait = 2 * time.Second

var errConsumerClosed = errs.E(errs.Conflict, "consumer closed")

// Next implements bus.Consumer.
func (c *consumer) Next(ctx context.Context) (bus.Delivery, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, errConsumerClosed
		case <-c.b.done:
			return nil, errClosed
		default:
		}
		fctx, cancel := context.WithTimeout(ctx, fetchWait)
		stop := context.AfterFunc(ctx, cancel)
		go func() {
			select {
			case <-c.done:
			case <-c.b.done:
			case <-fctx.Done():
			}
			cancel()
		}()
		m, err := c.cons.Next(jetstream.FetchContext(fctx))
		stop()
		cancel()
		if err == nil {
			md, err := m.Metadata()
			if err != nil {
				return nil, interpret(err, "task metadata")
			}
			h := m.Headers()
			return &delivery{m: m, attempt: int(md.NumDelivered), task: bus.Task{
				Queue: c.queue, ID: h.Get(jetstream.MsgIDHeader), TenantID: h.Get(tenantHeader), Payload: m.Data(),
			}}, nil
		}
		if errors.Is(err, natsio.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			continue // the loop's checks tell a timeout from the end
		}
		if errors.Is(err, natsio.ErrConnectionClosed) {
			return nil, errClosed
		}
		// A server failing over: pull again after a breath.
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

type delivery struct {
	m       jetstream.Msg
	attempt int
	task    bus.Task
}

func (d *delivery) Task() bus.Task { return d.task }
func (d *delivery) Attempt() int   { return d.attempt }

// Ack waits for the server's confirmation: a task is done only once the
// stream has let go of it.
func (d *delivery) Ack(ctx context.Context) error {
	return interpret(d.m.DoubleAck(ctx), "ack task %s", d.task.ID)
}

func (d *delivery) Nak(_ context.Context, delay time.Duration) error {
	if delay <= 0 {
		return interpret(d.m.Nak(), "nak task %s", d.task.ID)
	}
	return interpret(d.m.NakWithDelay(delay), "nak task %s", d.task.ID)
}
