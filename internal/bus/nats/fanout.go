package nats

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexixai/agentos/internal/bus/inproc"
	"github.com/nexixai/agentos/internal/store"
)

// feedBuffer is how many messages the fan-out consumer pulls ahead: one
// per replica, so larger than a subscription's (bus.SubscriberBuffer).
const feedBuffer = 512

// feedRetry is the pause before the fan-out consumer is made again after
// its ordered consumer gave up (a NATS outage longer than its resets).
const feedRetry = 500 * time.Millisecond

// startFeed opens the one consumer of the local fan-out (Config.History
// set): an ordered consumer on every event subject, whose messages are
// published to the in-process bus b.local, which the subscriptions read.
// It is made before Dial returns, so that a subscription is live once
// Subscribe returns, as the port promises: the consumer already delivers
// every event stored after it.
func (b *Bus) startFeed(ctx context.Context) error {
	b.local = inproc.New(inproc.Config{History: b.cfg.History})
	// Where the stream ends now: a consumer made again before the first
	// message starts after it, not at the stream's beginning.
	info, err := b.eventsStream.Info(ctx)
	if err != nil {
		return interpret(err, "open the fan-out consumer")
	}
	it, err := b.openFeed(ctx, 0)
	if err != nil {
		return err
	}
	b.feedDone = make(chan struct{})
	go b.pumpFeed(it, info.State.LastSeq)
	return nil
}

// openFeed makes the fan-out's consumer: new events only, or (after a
// failure) from stream sequence from on, so that none is skipped.
func (b *Bus) openFeed(ctx context.Context, from uint64) (jetstream.MessagesContext, error) {
	oc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{b.cfg.Namespace + ".ev.>"},
		DeliverPolicy: jetstream.DeliverNewPolicy, InactiveThreshold: consumerInactive}
	if from > 0 {
		oc.DeliverPolicy, oc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := b.js.OrderedConsumer(ctx, b.eventsStream.CachedInfo().Config.Name, oc)
	if err != nil {
		return nil, interpret(err, "open the fan-out consumer")
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(feedBuffer),
		jetstream.PullExpiry(10*time.Second), jetstream.PullHeartbeat(2*time.Second))
	if err != nil {
		return nil, interpret(err, "open the fan-out consumer")
	}
	stop := func() {
		it.Stop()
		if info := cons.CachedInfo(); info != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = b.js.DeleteConsumer(ctx, info.Stream, info.Name)
		}
	}
	// Close stops the consumer it finds here; one made after it looked
	// is stopped now.
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.feedStop = stop
	}
	b.mu.Unlock()
	if closed {
		stop()
		return nil, errClosed
	}
	return it, nil
}

// pumpFeed moves the consumer's messages to the in-process bus until the
// bus closes. Publishing there never blocks: a local subscriber too slow
// for its share is dropped there (and resumes from History), the others
// and this pump go on. If the consumer fails it is made again where it
// stopped, so local subscribers see no gap and are not dropped.
func (b *Bus) pumpFeed(it jetstream.MessagesContext, last uint64) {
	defer close(b.feedDone)
	// last is the stream sequence of the last message handled.
	for {
		m, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) && b.isClosed() {
			return
		}
		if err != nil {
			it = b.reopenFeed(last + 1)
			if it == nil {
				return // closed meanwhile
			}
			continue
		}
		if md, err := m.Metadata(); err == nil {
			last = md.Sequence.Stream
		}
		// An event no local subscriber watches is not even decoded: the
		// subject names its tenant and run.
		if tenant, run, ok := b.subjectIDs(m.Subject()); ok && !b.local.Watched(tenant, run) {
			continue
		}
		var e store.Event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			continue // not ours to break on; the store has the event
		}
		// Errors: the event is invalid (not published by Bus.Publish) or
		// the local bus closed (then the next Next ends the pump).
		_ = b.local.Publish(context.Background(), e)
	}
}

// reopenFeed makes the consumer again from stream sequence from, retrying
// until it succeeds or the bus closes (nil then).
func (b *Bus) reopenFeed(from uint64) jetstream.MessagesContext {
	for {
		if b.isClosed() {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		it, err := b.openFeed(ctx, from)
		cancel()
		if err == nil {
			return it
		}
		select {
		case <-b.done:
			return nil
		case <-time.After(feedRetry):
		}
	}
}

// subjectIDs reads the tenant and run ids back from an event subject.
func (b *Bus) subjectIDs(subject string) (tenant, run string, ok bool) {
	rest, ok := strings.CutPrefix(subject, b.cfg.Namespace+".ev.")
	if !ok {
		return "", "", false
	}
	t, r, ok := strings.Cut(rest, ".")
	if !ok {
		return "", "", false
	}
	if tenant, ok = untoken(t); !ok {
		return "", "", false
	}
	run, ok = untoken(r)
	return tenant, run, ok
}
