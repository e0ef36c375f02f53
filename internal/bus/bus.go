// Package bus is the control plane's message bus port: committed run
// events fanned out to live readers, signals between replicas (cancel a
// run, wake the schedulers), and durable work queues (worker tasks).
//
// Adapters: bus/inproc (the embedded default: one process, no broker, as
// fast as the events.Hub it replaces) and bus/nats (NATS JetStream, for
// replicas on several machines). bus/bustest is the conformance suite both
// run. The port is internal: methods take params structs so that a field
// can be added without breaking an adapter.
//
// # Guarantees
//
//   - Events of one run reach a subscriber in the order they were
//     published (store sequence order), each at most once per event_id
//     within the adapter's dedupe window: publishing again after an
//     uncertain error is safe (at-least-once publish, deduplicated).
//   - A subscription sees one tenant's events only. Ids are data, never
//     routing syntax: a tenant called "a.b", "*" or ">" sees its own events.
//   - A subscriber that falls behind (its buffer of SubscriberBuffer is
//     full) is dropped, never waited for: its channel closes and Lagged
//     reports true. It resumes with Resume and After = the last sequence it
//     handled, and gets every later event once, in order.
//   - Signals are best effort and fan out to every signal subscriber (every
//     replica). They carry no state: the store holds the canceled status,
//     the queue holds the run; a missed signal costs latency, not
//     correctness, because the receiver still polls (slowly).
//   - Work is durable and at-least-once: each task goes to one consumer at
//     a time; a consumer that dies or does not Ack within AckWait loses it
//     to another consumer (Attempt counts deliveries).
//
// # How the orchestrator uses it
//
//   - events: Server.commit publishes the events ApplyRunChange returned;
//     streamSSE subscribes by run before replaying from the store, writes
//     from C, fills a gap from the store, and on a closed, lagged
//     subscription subscribes again (Resume, After = its last sequence).
//     With NATS the run may execute on another replica: its events still
//     arrive here, and the store poll becomes a fallback only (10 s). The
//     replica's NATS bus keeps one consumer for all its streams and fans
//     the events out in process (bus/nats, Config.History).
//   - cancel: cancelRun commits the canceled status, then publishes
//     Signal{Kind: SignalCancel} (unless it stopped the executor itself);
//     every replica's signal loop looks the run up in its s.running map
//     and stops the executor (the executor's 1 s store check remains).
//   - wake-ups: run admission and a finishing executor publish
//     Signal{Kind: SignalWake}; every replica's signal loop calls
//     Server.Wake, so a queued run starts as soon as any replica has a
//     free executor instead of at the next PollInterval.
//   - cache invalidation: a write of a tenant, agent or token through
//     the store's cache (storecache) publishes Signal{Kind:
//     SignalInvalidate}; every replica's signal loop drops that entry,
//     so a tenant disabled through one replica is refused by all as soon
//     as the signal arrives (the cache TTL is the fallback).
//   - worker tasks (later): Enqueue a Task on a named queue, workers
//     Consume, Ack when done; a crashed worker's task is redelivered.
package bus

import (
	"context"
	"regexp"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// SubscriberBuffer is how many events or signals a subscription holds
// before it is dropped as lagged. Small on purpose, as in events.Hub:
// every open SSE stream has one, and a dropped reader resumes without loss.
const SubscriberBuffer = 32

// Bus is the whole port; an adapter implements all of it.
type Bus interface {
	Events
	Signals
	Work
	// Close releases the adapter's resources; subscriptions and consumers
	// end. Idempotent.
	Close() error
}

// Pinger is what a bus adapter with a broker offers /readyz: Ping reports
// whether the broker answers now (dependency_unavailable when it does
// not). An adapter without a broker (inproc) has nothing to check.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Events carries committed run events.
type Events interface {
	// Publish hands committed events to subscribers, in order. Every event
	// needs event_id, tenant_id, run_id and a positive sequence
	// (errs.InvalidRequest naming the field otherwise; nothing is
	// published). An event whose event_id was already published within the
	// dedupe window is dropped. When Publish returns nil every event is
	// accepted (with NATS: stored by the stream's replicas); on error the
	// caller may publish the same events again.
	Publish(ctx context.Context, evs ...store.Event) error
	// Subscribe receives the events of one run (p.RunID set) or of all of a
	// tenant's runs, published after Subscribe returned (and with Resume,
	// the run's events after p.After first). ctx bounds making the
	// subscription only: it lives until Close.
	Subscribe(ctx context.Context, p SubscribeParams) (Subscription[store.Event], error)
}

// SubscribeParams selects events.
type SubscribeParams struct {
	TenantID string // required
	RunID    string // "" subscribes to every run of the tenant
	// Resume replays the run's events with Sequence > After before live
	// ones, with no gap and no duplicate between the two. Needs RunID.
	Resume bool
	// After is the last sequence the subscriber has. Without Resume, a
	// run's live subscription skips events at or below it (a broker feed
	// may still be carrying them when the subscription is made).
	After int64
}

// Subscription is a live feed. C closes when the subscription ends:
// Close, Bus.Close, or the subscriber fell behind (then Lagged is true).
type Subscription[T any] interface {
	C() <-chan T
	// Lagged reports whether the subscription was dropped because its
	// reader fell behind; the reader resumes (events: Resume from the last
	// sequence it handled; signals: a store scan).
	Lagged() bool
	// Close ends the subscription. Idempotent.
	Close()
}

// Signal kinds.
const (
	// SignalCancel: the run's canceled status is committed; whoever
	// executes it stops now.
	SignalCancel = "cancel"
	// SignalWake: there may be queued work; schedulers lease now.
	SignalWake = "wake"
	// SignalInvalidate: a tenant, agent, token or run changed; every replica
	// drops its cached copy (Entity, TenantID, ID name it).
	SignalInvalidate = "invalidate"
)

// Entities a SignalInvalidate names.
const (
	EntityTenant = "tenant"
	EntityAgent  = "agent"
	EntityToken  = "token"
	EntityRun    = "run" // a terminal run's cached copy (ID the run id)
	// EntityWebhooks is a tenant's default webhook endpoints (no ID).
	EntityWebhooks = "webhooks"
)

// Signal is a hint from one replica to all.
type Signal struct {
	Kind     string `json:"kind"`             // SignalCancel or SignalWake
	TenantID string `json:"tenant_id"`        // required for cancel; optional for wake
	RunID    string `json:"run_id,omitempty"` // required for cancel
	Reason   string `json:"reason,omitempty"`
	// Invalidate: what changed. Entity is EntityTenant (ID ""),
	// EntityAgent (ID the agent id) or EntityToken (ID the token id).
	Entity string `json:"entity,omitempty"`
	ID     string `json:"id,omitempty"`
}

// Signals carries signals between replicas.
type Signals interface {
	// Signal sends s to every signal subscriber, this process included.
	Signal(ctx context.Context, s Signal) error
	// SubscribeSignals receives every signal sent after it returned.
	SubscribeSignals(ctx context.Context) (Subscription[Signal], error)
}

// Task is a unit of work on a named queue.
type Task struct {
	Queue    string // [a-z0-9_-]{1,64}: queue names are code, not user data
	ID       string // required; a task whose ID was enqueued within the dedupe window is dropped
	TenantID string // required
	Payload  []byte
}

// ConsumeParams opens a consumer.
type ConsumeParams struct {
	Queue string
	// AckWait is how long a delivery stays with its consumer without Ack
	// or Nak before another consumer gets it (default 30 s).
	AckWait time.Duration
}

// DefaultAckWait is ConsumeParams.AckWait's default.
const DefaultAckWait = 30 * time.Second

// Work is a set of durable work queues.
type Work interface {
	// Enqueue stores a task until a consumer acks it.
	Enqueue(ctx context.Context, t Task) error
	// Consume opens a consumer; all consumers of a queue share its tasks,
	// each task going to one of them at a time.
	Consume(ctx context.Context, p ConsumeParams) (Consumer, error)
}

// Consumer takes tasks from one queue.
type Consumer interface {
	// Next blocks until a task is delivered or ctx ends (then ctx.Err()).
	Next(ctx context.Context) (Delivery, error)
	// Close stops the consumer. Deliveries not yet acked stay with it until
	// their AckWait passes, as if it had died, then go to another consumer.
	Close() error
}

// Delivery is one delivery of a task.
type Delivery interface {
	Task() Task
	// Attempt is 1 on the first delivery, 2 on the first redelivery...
	Attempt() int
	// Ack removes the task for good.
	Ack(ctx context.Context) error
	// Nak gives the task back for redelivery after delay.
	Nak(ctx context.Context, delay time.Duration) error
}

// ValidateEvent checks a published event; every adapter calls it first.
func ValidateEvent(e store.Event) error {
	switch {
	case e.EventID == "":
		return errs.Field("event_id", "is required")
	case e.TenantID == "":
		return errs.Field("tenant_id", "is required")
	case e.RunID == "":
		return errs.Field("run_id", "is required")
	case e.Sequence < 1:
		return errs.Field("sequence", "must be at least 1")
	}
	return nil
}

// Validate checks a subscription; every adapter calls it first.
func (p SubscribeParams) Validate() error {
	switch {
	case p.TenantID == "":
		return errs.Field("tenant_id", "is required")
	case p.Resume && p.RunID == "":
		return errs.Field("run_id", "is required to resume")
	case p.After < 0:
		return errs.Field("after", "must not be negative")
	}
	return nil
}

// Validate checks a signal; every adapter calls it first.
func (s Signal) Validate() error {
	switch s.Kind {
	case SignalCancel:
		if s.TenantID == "" {
			return errs.Field("tenant_id", "is required for cancel")
		}
		if s.RunID == "" {
			return errs.Field("run_id", "is required for cancel")
		}
	case SignalWake:
	case SignalInvalidate:
		if s.TenantID == "" {
			return errs.Field("tenant_id", "is required for invalidate")
		}
		switch s.Entity {
		case EntityTenant, EntityWebhooks:
		case EntityAgent, EntityToken, EntityRun:
			if s.ID == "" {
				return errs.Field("id", "is required to invalidate an agent, a token or a run")
			}
		default:
			return errs.Field("entity", "must be tenant, agent, token, run or webhooks")
		}
	case "":
		return errs.Field("kind", "is required")
	default:
		return errs.Field("kind", "must be cancel, wake or invalidate")
	}
	return nil
}

var queueName = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

func validQueue(q string) error {
	if !queueName.MatchString(q) {
		return errs.Field("queue", "must match [a-z0-9_-]{1,64}")
	}
	return nil
}

// Validate checks a task; every adapter calls it first.
func (t Task) Validate() error {
	if err := validQueue(t.Queue); err != nil {
		return err
	}
	switch {
	case t.ID == "":
		return errs.Field("id", "is required")
	case t.TenantID == "":
		return errs.Field("tenant_id", "is required")
	}
	return nil
}

// Validate checks a consumer; every adapter calls it first.
func (p ConsumeParams) Validate() error {
	if err := validQueue(p.Queue); err != nil {
		return err
	}
	if p.AckWait < 0 {
		return errs.Field("ack_wait", "must not be negative")
	}
	return nil
}

// WithDefaults fills AckWait.
func (p ConsumeParams) WithDefaults() ConsumeParams {
	if p.AckWait == 0 {
		p.AckWait = DefaultAckWait
	}
	return p
}

// History is where a resumed subscription replays from when the adapter
// keeps no history of its own: the store (store.Store implements it).
type History interface {
	ListEvents(ctx context.Context, p store.ListEventsParams) ([]store.Event, error)
}
