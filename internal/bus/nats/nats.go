// Package nats is the bus on NATS JetStream, for replicas on several
// machines.
//
// # Subjects and streams
//
// With namespace ns (default "agentos"):
//
//	ns.ev.<tenant>.<run>   run events       stream NS_EVENTS (limits, file, MaxAge)
//	ns.work.<queue>        work tasks       stream NS_WORK   (work queue, file)
//	ns.sig                 signals          core NATS, not stored
//
// Tenant and run ids are escaped into single tokens (see token), so an id
// can neither split into two tokens nor act as a wildcard. Every event is
// published with Nats-Msg-Id = event_id and every task with Nats-Msg-Id =
// task id: the stream drops a duplicate within DedupeWindow (default 2 min).
//
// Subscriptions are read from ordered consumers (ephemeral,
// flow-controlled), so what a subscriber gets is what the stream stored:
// deduplicated, in stream order, and after a NATS server dies the consumer
// resumes where it was on another server. Two modes:
//
//   - Local fan-out (Config.History set, what the orchestrator uses): one
//     ordered consumer per Bus on every event subject (ns.ev.>), made by
//     Dial, feeding an in-process bus (bus/inproc) that every
//     subscription reads. N SSE streams on a replica cost one consumer on
//     the server, not N; the consumer skips, undecoded, the events of runs
//     nobody on this replica watches. A slow subscriber is dropped by the
//     in-process bus without slowing the consumer; a resumed subscription
//     replays from History (the store), then live. If the consumer fails
//     for good (an outage longer than its resets) it is made again from
//     the stream sequence after the last one it handled: no gap.
//   - Per subscription (no History): each subscription is its own
//     consumer filtered on the run's or the tenant's subjects, and a
//     resumed run subscription replays the run's subject from the stream.
//
// Work queues are durable pull consumers (one per queue, shared by all of
// its Consumers), explicit ack, AckWait from ConsumeParams.
//
// # Durability and the loss window
//
// Publish returns once the stream leader has the event and a quorum of
// the stream's replicas (Replicas, 3 in a cluster) has it in its log. The
// servers write it to the file store at once, but fsync it only every
// sync_interval (the server's setting, 2 minutes by default). So with the
// default an acknowledged event survives the kill of any one server (the
// others have it, and the killed one's page cache reaches its disk: a
// process crash loses nothing), and is lost only if a quorum of machines
// loses power within the same sync interval. `sync_interval: always`
// closes that window at an fsync per message: on this machine (one
// embedded server, BenchmarkNATS) a publish's ack takes 0.05-0.15 ms with
// the interval and 0.5-1.1 ms with always. The choice: a single server
// (the local profile, where one machine is the quorum) runs with always
// (natstest.Options.SyncAlways, TestRestartFromDisk); a three-server
// cluster with replicas 3 keeps the interval, its window being a power
// loss of two machines within 2 minutes (TestClusterLosesOneServer). The run store stays the source of truth either way:
// a lost event is re-read from it by Last-Event-ID.
//
// # Scale
//
// With the local fan-out every replica receives every event of the stream
// (it skips those nobody watches there, but they cross the wire): the
// stream's delivered bytes grow with the replicas, not with the SSE
// clients. docs/scaling.md has the measured figures and what partitions
// next (runs by tenant hash across streams, consumers filtered on them).
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/bus/inproc"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// Config configures a connection to the bus.
type Config struct {
	// URL is the NATS server URL, or several separated by commas.
	URL string
	// Name names the connection on the server (e.g. the replica).
	Name string
	// Namespace prefixes subjects and names streams ([a-z0-9_-],
	// default "agentos"): several deployments (or tests) share a server.
	Namespace string
	// Replicas is the streams' replication factor (default 1; 3 in a
	// three-server cluster).
	Replicas int
	// EventsMaxAge is how long events stay in the stream for resumed
	// subscriptions (default 24 h); older ones are read from the store.
	EventsMaxAge time.Duration
	// DedupeWindow is how long an event_id or task id is remembered to
	// drop duplicates (default 2 min, JetStream's default).
	DedupeWindow time.Duration
	// History, when set, turns on the local fan-out (see the package
	// doc): one consumer per Bus, and resumed subscriptions replay from
	// History (the run store) instead of the stream.
	History bus.History
	// NkeySeedFile, when set, authenticates with the NATS user nkey seed
	// in that file (a server with natsd.Auth on lets in only known keys).
	NkeySeedFile string
	// InboxPrefix replaces "_INBOX" for replies (a worker may subscribe
	// only to its own prefix, workerproto.InboxPrefix).
	InboxPrefix string
	// UseStreams makes no stream: it relies on the streams a control
	// plane connection made (a worker has no right to make them).
	UseStreams bool
	// Options are extra connection options (handlers of a worker).
	Options []natsio.Option
}

func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = "agentos"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.EventsMaxAge == 0 {
		c.EventsMaxAge = 24 * time.Hour
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 2 * time.Minute
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.URL == "":
		return errs.Field("url", "is required")
	case !validNamespace(c.Namespace):
		return errs.Field("namespace", "must match [a-z0-9_-]{1,32}")
	case c.Replicas < 1 || c.Replicas > 5:
		return errs.Field("replicas", "must be 1 to 5")
	case c.EventsMaxAge < 0:
		return errs.Field("events_max_age", "must not be negative")
	case c.DedupeWindow < 0:
		return errs.Field("dedupe_window", "must not be negative")
	}
	return nil
}

func validNamespace(ns string) bool {
	if len(ns) < 1 || len(ns) > 32 {
		return false
	}
	for i := 0; i < len(ns); i++ {
		if c := ns[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Bus is a connection to the bus on NATS JetStream.
type Bus struct {
	cfg          Config
	nc           *natsio.Conn
	js           jetstream.JetStream
	eventsStream jetstream.Stream
	workStream   string
	done         chan struct{}

	// The local fan-out (Config.History set): the in-process bus the
	// subscriptions read, fed by one consumer; feedStop stops the
	// current consumer, feedDone closes when its pump has ended.
	local    *inproc.Bus
	feedDone chan struct{}

	mu       sync.Mutex
	closed   bool
	subs     map[any]func()
	feedStop func()
}

var (
	_ bus.Bus    = (*Bus)(nil)
	_ bus.Pinger = (*Bus)(nil)
)

// Dial connects and makes sure the streams exist (creating or updating
// them: every replica dials with the same config). It retries while the
// cluster is not ready (no JetStream meta leader yet) until ctx ends.
func Dial(ctx context.Context, cfg Config) (*Bus, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// Reconnect forever (a replica never needs a restart after an outage;
	// /readyz says not-ready meanwhile), and ping the server every 2 s so
	// that one which hangs with the connection open is noticed after three
	// unanswered pings and reconnected to, like one that went away.
	// Publishes made while disconnected wait in nats.go's reconnect buffer
	// (8 MiB) and go out on reconnect; the orchestrator bounds how long it
	// waits for their acks.
	opts := []natsio.Option{natsio.Name(cfg.Name),
		natsio.MaxReconnects(-1), natsio.ReconnectWait(100 * time.Millisecond),
		natsio.PingInterval(2 * time.Second), natsio.MaxPingsOutstanding(3)}
	if cfg.NkeySeedFile != "" {
		o, err := natsio.NkeyOptionFromSeed(cfg.NkeySeedFile)
		if err != nil {
			return nil, errs.Wrap(errs.InvalidRequest, err, "nkey seed file")
		}
		opts = append(opts, o)
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, natsio.CustomInboxPrefix(cfg.InboxPrefix))
	}
	opts = append(opts, cfg.Options...)
	nc, err := natsio.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, interpret(err, "connect to nats")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, interpret(err, "jetstream")
	}
	b := &Bus{cfg: cfg, nc: nc, js: js, done: make(chan struct{}), subs: map[any]func(){}}
	up := strings.ToUpper(cfg.Namespace)
	events := jetstream.StreamConfig{
		Name: up + "_EVENTS", Subjects: []string{cfg.Namespace + ".ev.>"},
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		MaxAge: cfg.EventsMaxAge, Duplicates: cfg.DedupeWindow, Discard: jetstream.DiscardOld,
	}
	work := jetstream.StreamConfig{
		Name: up + "_WORK", Subjects: []string{cfg.Namespace + ".work.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		Duplicates: cfg.DedupeWindow,
	}
	b.workStream = work.Name
	if cfg.UseStreams {
		return b, nil
	}
	for _, sc := range []jetstream.StreamConfig{events, work} {
		var s jetstream.Stream
		for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
			// Each attempt gets its own timeout: while a cluster elects a
			// meta leader a request can go unanswered, and the next one,
			// maybe to another server, may be answered.
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			s, err = js.CreateOrUpdateStream(actx, sc)
			cancel()
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				nc.Close()
				return nil, interpret(err, "create stream %s", sc.Name)
			case <-time.After(wait):
			}
		}
		if sc.Name == events.Name {
			b.eventsStream = s
		}
	}
	b.workStream = work.Name
	if cfg.History != nil {
		if err := b.startFeed(ctx); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return b, nil
}

// interpret turns a NATS error into the port's: validation and context
// errors pass, everything else is the bus being unavailable.
func interpret(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var e *errs.Error
	if errors.As(err, &e) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return errs.Wrap(errs.DependencyUnavailable, err, format, args...)
}

var errClosed = errs.E(errs.DependencyUnavailable, "bus closed")

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// track registers k's close for Close; false if the bus is closed.
func (b *Bus) track(k any, close func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.subs[k] = close
	return true
}

func (b *Bus) untrack(k any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, k)
}

func (b *Bus) eventSubject(tenant, run string) string {
	return b.cfg.Namespace + ".ev." + token(tenant) + "." + token(run)
}

// Publish implements bus.Events: the events go out pipelined and
// Publish waits for every ack. If one fails the caller publishes the
// batch again; those already stored are dropped as duplicates. (A retry
// can put a failed event after a later one in the stream; subscribers see
// the gap in sequences and fill it from the store, as they must anyway
// when two writers of one run publish concurrently.)
func (b *Bus) Publish(ctx context.Context, evs ...store.Event) error {
	for _, e := range evs {
		if err := bus.ValidateEvent(e); err != nil {
			return err
		}
	}
	if b.isClosed() {
		return errClosed
	}
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for _, e := range evs {
		data, err := json.Marshal(e)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "encode event %s", e.EventID)
		}
		m := natsio.NewMsg(b.eventSubject(e.TenantID, e.RunID))
		m.Header.Set(jetstream.MsgIDHeader, e.EventID)
		m.Data = data
		f, err := b.js.PublishMsgAsync(m)
		if err != nil {
			return interpret(err, "publish event %s", e.EventID)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return interpret(err, "publish event %s", f.Msg().Header.Get(jetstream.MsgIDHeader))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// consumerInactive is how long the server keeps a subscription's consumer
// after its client stopped pulling (died, or a reader blocked that long).
// An ordered consumer whose consumer was reaped makes a new one where it
// was, so a short threshold costs nothing but a reset.
const consumerInactive = 30 * time.Second

// eventSub is one subscription: an ordered consumer pumped into a sink.
type eventSub struct {
	*bus.Sink[store.Event]
	it jetstream.MessagesContext
}

// Subscribe implements bus.Events.
func (b *Bus) Subscribe(ctx context.Context, p bus.SubscribeParams) (bus.Subscription[store.Event], error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if b.isClosed() {
		return nil, errClosed
	}
	if b.local != nil {
		return b.local.Subscribe(ctx, p)
	}
	subject := b.cfg.Namespace + ".ev." + token(p.TenantID) + ".*"
	if p.RunID != "" {
		subject = b.eventSubject(p.TenantID, p.RunID)
	}
	oc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverNewPolicy,
		// Close deletes the consumer; this reaps those of a client that died.
		InactiveThreshold: consumerInactive}
	// History ends at the run's last stored event: what comes before it
	// is replayed at the reader's pace, what comes after is live and a
	// reader too slow for it is dropped.
	var historyEnd uint64
	if p.Resume {
		oc.DeliverPolicy = jetstream.DeliverAllPolicy
		last, err := b.eventsStream.GetLastMsgForSubject(ctx, subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return nil, interpret(err, "find the end of run %s", p.RunID)
		default:
			historyEnd = last.Sequence
		}
	}
	cons, err := b.js.OrderedConsumer(ctx, b.eventsStream.CachedInfo().Config.Name, oc)
	if err != nil {
		return nil, interpret(err, "subscribe")
	}
	// A small pull buffer: a subscription's memory is its sink plus this.
	// Heartbeats every 2 s (the ordered default is 5 s): a subscription
	// whose consumer's server died notices in about 4 s and makes a new
	// consumer where it was, so live SSE resumes quickly after a failover.
	it, err := cons.Messages(jetstream.PullMaxMessages(bus.SubscriberBuffer),
		jetstream.PullExpiry(10*time.Second), jetstream.PullHeartbeat(2*time.Second))
	if err != nil {
		return nil, interpret(err, "subscribe")
	}
	s := &eventSub{it: it}
	stop := func() {
		it.Stop()
		b.untrack(s)
		// Stop leaves the consumer on the server; every SSE stream that
		// ends would otherwise hold one until consumerInactive.
		if info := cons.CachedInfo(); info != nil {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = b.js.DeleteConsumer(ctx, info.Stream, info.Name)
			}()
		}
	}
	s.Sink = bus.NewSink[store.Event](bus.SubscriberBuffer, stop)
	if !b.track(s, s.Close) {
		it.Stop()
		return nil, errClosed
	}
	go func() {
		for {
			m, err := it.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return // stopped by Close or the bus closing
			}
			if err != nil {
				// The ordered consumer gave up making its consumer again
				// (a failover longer than its retries): the reader resumes
				// from the last sequence it handled, on a new consumer.
				s.Drop()
				stop()
				return
			}
			var e store.Event
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				continue // not ours to break on; the store has the event
			}
			if p.Resume && e.Sequence <= p.After {
				continue
			}
			md, err := m.Metadata()
			if err == nil && md.Sequence.Stream <= historyEnd {
				if !s.Send(e) {
					return
				}
				continue
			}
			if !s.Offer(e) {
				stop()
				return
			}
		}
	}()
	return s, nil
}

// Signal implements bus.Signals. Core NATS, not stored: a replica that is
// disconnected misses it and relies on its poll.
func (b *Bus) Signal(ctx context.Context, s bus.Signal) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if b.isClosed() {
		return errClosed
	}
	data, err := json.Marshal(s)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode signal")
	}
	if err := b.nc.Publish(b.cfg.Namespace+".sig", data); err != nil {
		return interpret(err, "signal")
	}
	return interpret(b.flush(ctx), "signal")
}

// flush waits for the server to have processed what was sent, bounded
// (nats.go insists on a deadline).
func (b *Bus) flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	return b.nc.FlushWithContext(ctx)
}

type signalSub struct {
	*bus.Sink[bus.Signal]
}

// SubscribeSignals implements bus.Signals.
func (b *Bus) SubscribeSignals(ctx context.Context) (bus.Subscription[bus.Signal], error) {
	if b.isClosed() {
		return nil, errClosed
	}
	s := &signalSub{}
	var ns *natsio.Subscription
	var nsMu sync.Mutex
	unsubscribe := func() {
		nsMu.Lock()
		defer nsMu.Unlock()
		if ns != nil {
			_ = ns.Unsubscribe()
		}
	}
	s.Sink = bus.NewSink[bus.Signal](bus.SubscriberBuffer, func() { unsubscribe(); b.untrack(s) })
	nsMu.Lock()
	var err error
	ns, err = b.nc.Subscribe(b.cfg.Namespace+".sig", func(m *natsio.Msg) {
		var sig bus.Signal
		if json.Unmarshal(m.Data, &sig) != nil {
			return
		}
		if !s.Offer(sig) {
			go func() { unsubscribe(); b.untrack(s) }()
		}
	})
	nsMu.Unlock()
	if err != nil {
		return nil, interpret(err, "subscribe to signals")
	}
	// The subscription is live once the server has it.
	if err := b.flush(ctx); err != nil {
		unsubscribe()
		return nil, interpret(err, "subscribe to signals")
	}
	if !b.track(s, s.Close) {
		unsubscribe()
		return nil, errClosed
	}
	return s, nil
}

// Ping implements bus.Pinger: the connection is up and JetStream answers
// (a server that accepts connections while its JetStream is not ready
// would take no event).
func (b *Bus) Ping(ctx context.Context) error {
	if b.isClosed() {
		return errClosed
	}
	if st := b.nc.Status(); st != natsio.CONNECTED {
		return errs.E(errs.DependencyUnavailable, "nats connection is %s", strings.ToLower(st.String()))
	}
	if _, err := b.js.AccountInfo(ctx); err != nil {
		// Not answering within the probe's deadline is unavailability too.
		return errs.Wrap(errs.DependencyUnavailable, err, "jetstream does not answer")
	}
	return nil
}

// Close implements bus.Bus.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	closers := make([]func(), 0, len(b.subs))
	for _, f := range b.subs {
		closers = append(closers, f)
	}
	b.mu.Unlock()
	for _, f := range closers {
		f()
	}
	close(b.done)
	if b.local != nil {
		b.mu.Lock()
		stop := b.feedStop
		b.mu.Unlock()
		stop()
		<-b.feedDone
		_ = b.local.Close()
	}
	b.nc.Close()
	return nil
}

// Conn is the bus's NATS connection, for protocols beside the port's
// (worker heartbeats and results, internal/dispatch and worker/). The
// Bus owns it: callers must not close it.
func (b *Bus) Conn() *natsio.Conn { return b.nc }

// Namespace is the subjects' prefix.
func (b *Bus) Namespace() string { return b.cfg.Namespace }
