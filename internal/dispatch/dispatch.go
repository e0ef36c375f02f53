// Package dispatch is the orchestrator's side of worker nodes: it sends a
// placed tool call to the workers whose labels match, as a task on a
// JetStream work queue (exactly one worker takes it), waits for the
// result, and keeps the live worker table from their heartbeats.
//
// The orchestrator still decides everything: which call, when, and what
// happens when a worker dies. A worker that stops heartbeating while it
// runs a task (kill -9, a lost machine) is counted dead after
// HeartbeatTimeout; the call is then sent again (a new task, attempt n+1)
// if the tool is idempotent and time remains, else it ends with error
// code "interrupted": a non-idempotent tool is never run twice. A call no
// worker takes before its deadline ends with dependency_unavailable.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/workerproto"
)

// CodeInterrupted is the error code of a non-idempotent call whose worker
// died while running it.
const CodeInterrupted errs.Code = "interrupted"

// Config configures a Dispatcher.
type Config struct {
	// Conn is the control plane's NATS connection (the bus's).
	Conn *natsio.Conn
	// Work enqueues tasks (the NATS bus).
	Work bus.Work
	// Namespace of the subjects (the bus's; default "agentos").
	Namespace string
	// HeartbeatTimeout: a worker silent this long is dead (default
	// workerproto.DefaultHeartbeatTimeout).
	HeartbeatTimeout time.Duration
	Registry         prometheus.Registerer
	Logger           *slog.Logger
	Now              func() time.Time
}

// Dispatcher sends placed calls to workers. Safe for concurrent use.
type Dispatcher struct {
	cfg     Config
	subj    workerproto.Subjects
	replica string
	metrics *metrics
	subs    []*natsio.Subscription

	mu      sync.Mutex
	pending map[string]*inbox // by task id
	workers map[string]*live
	gates   map[string]*fairGate // by shared queue (fair.go)
}

// live is what the last heartbeat of a worker said, and when.
type live struct {
	hb   workerproto.Heartbeat
	seen time.Time
}

// inbox holds a task's results in arrival order, without bound or loss:
// the bus's callback must never block, and a streamed call's fragments may
// arrive faster than its waiter takes them.
type inbox struct {
	mu    sync.Mutex
	items []result
	ready chan struct{} // signalled when items is not empty
}

func newInbox() *inbox { return &inbox{ready: make(chan struct{}, 1)} }

func (b *inbox) put(r result) {
	b.mu.Lock()
	b.items = append(b.items, r)
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default: // already signalled
	}
}

func (b *inbox) take() []result {
	b.mu.Lock()
	defer b.mu.Unlock()
	items := b.items
	b.items = nil
	return items
}

type result struct {
	worker string
	r      workerproto.Result
}

// New subscribes to heartbeats and to this replica's results.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Conn == nil || cfg.Work == nil {
		return nil, errors.New("dispatch: Conn and Work are required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "agentos"
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = workerproto.DefaultHeartbeatTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Dispatcher{cfg: cfg, subj: workerproto.Subjects{NS: cfg.Namespace}, replica: strings.ToLower(ids.New("orc_")),
		metrics: newMetrics(cfg.Registry), pending: map[string]*inbox{}, workers: map[string]*live{},
		gates: map[string]*fairGate{}}
	hb, err := cfg.Conn.Subscribe(d.subj.Heartbeats(), d.onHeartbeat)
	if err != nil {
		return nil, errs.Wrap(errs.DependencyUnavailable, err, "subscribe to worker heartbeats")
	}
	res, err := cfg.Conn.Subscribe(d.subj.Results(d.replica), d.onResult)
	if err != nil {
		_ = hb.Unsubscribe()
		return nil, errs.Wrap(errs.DependencyUnavailable, err, "subscribe to worker results")
	}
	d.subs = []*natsio.Subscription{hb, res}
	if err := cfg.Conn.Flush(); err != nil {
		d.Close()
		return nil, errs.Wrap(errs.DependencyUnavailable, err, "subscribe to workers")
	}
	return d, nil
}

// Close stops listening (calls in flight end at their deadline).
func (d *Dispatcher) Close() {
	for _, s := range d.subs {
		_ = s.Unsubscribe()
	}
}

func (d *Dispatcher) onHeartbeat(m *natsio.Msg) {
	worker := strings.TrimPrefix(m.Subject, d.cfg.Namespace+".wk.hb.")
	var hb workerproto.Heartbeat
	if json.Unmarshal(m.Data, &hb) != nil {
		return
	}
	hb.WorkerID = worker // the subject, which the bus checked, names it
	d.mu.Lock()
	d.workers[worker] = &live{hb: hb, seen: d.cfg.Now()}
	d.mu.Unlock()
}

func (d *Dispatcher) onResult(m *natsio.Msg) {
	worker := d.subj.ResultWorker(m.Subject)
	var r workerproto.Result
	if worker == "" || json.Unmarshal(m.Data, &r) != nil {
		return
	}
	taskID := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	if r.TaskID != taskID {
		return
	}
	d.mu.Lock()
	ch, ok := d.pending[taskID]
	if l := d.workers[worker]; l != nil {
		l.seen = d.cfg.Now() // a worker that reports is alive
	}
	d.mu.Unlock()
	if ok {
		ch.put(result{worker, r})
	}
	if m.Reply != "" {
		_ = m.Respond([]byte("ok")) // received: the worker stops resending
	}
}

// Worker is a live worker as the heartbeats describe it.
type Worker struct {
	WorkerID      string            `json:"worker_id"`
	Labels        map[string]string `json:"labels"`
	Tools         []string          `json:"tools"`
	Models        []string          `json:"models,omitempty"`
	Tenants       []string          `json:"tenants,omitempty"`
	Concurrency   int               `json:"concurrency"`
	InFlight      int               `json:"in_flight"`
	Draining      bool              `json:"draining"`
	LastHeartbeat time.Time         `json:"last_heartbeat"`
}

// Live lists the workers heard from within HeartbeatTimeout, by id.
func (d *Dispatcher) Live() []Worker {
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Worker
	for id, l := range d.workers {
		if now.Sub(l.seen) > d.cfg.HeartbeatTimeout {
			continue
		}
		out = append(out, Worker{WorkerID: id, Labels: l.hb.Labels, Tools: l.hb.Tools, Models: l.hb.Models, Tenants: l.hb.Tenants, Concurrency: l.hb.Concurrency,
			InFlight: l.hb.InFlight, Draining: l.hb.Draining, LastHeartbeat: l.seen.UTC()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].WorkerID < out[j].WorkerID })
	return out
}

func (d *Dispatcher) alive(worker string, since time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := since
	if l := d.workers[worker]; l != nil && l.seen.After(seen) {
		seen = l.seen
	}
	return d.cfg.Now().Sub(seen) <= d.cfg.HeartbeatTimeout
}

// Call is one placed tool call, or a model call (Model set).
type Call struct {
	// Model, when set, makes this a model call on a worker's endpoint
	// (ToolID and Input are then unused).
	Model *workerproto.ModelCall
	// OnProgress receives a model call's streamed fragments in order; an
	// error from it ends the call with that error.
	OnProgress  func(json.RawMessage) error
	Labels      map[string]string // the placement (required, not empty)
	TenantID    string
	AgentID     string
	RunID       string
	StepID      string
	ToolCallID  string
	ToolID      string
	Input       json.RawMessage
	Auth        auth.Context
	Idempotent  bool
	Timeout     time.Duration
	Traceparent string
}

// what names the call in messages.
func (c Call) what() string {
	if c.Model != nil {
		return "model endpoint " + c.Model.Endpoint
	}
	return "tool " + c.ToolID
}

// Outcome is what the workers made of a call. Err is nil on success.
type Outcome struct {
	Output   json.RawMessage
	Err      *errs.Error
	WorkerID string // the worker that ran (or last ran) it; "" if none took it
	Attempts int
}

// watchEvery is how often a waiting call checks its worker's heartbeat.
const watchEvery = 250 * time.Millisecond

// Run sends c to a matching worker and waits for its outcome, until
// c.Timeout. It returns ctx's error only when ctx ended (the run was
// canceled or lost); every other ending is an Outcome.
func (d *Dispatcher) Run(ctx context.Context, c Call) (Outcome, error) {
	if len(c.Labels) == 0 {
		return Outcome{}, errs.E(errs.Internal, "dispatch: a call needs a placement")
	}
	deadline := d.cfg.Now().Add(c.Timeout)
	var out Outcome
	// A call for the shared pool takes its turn among the tenants' (fair.go).
	if d.queueFor(c.Labels, c.TenantID) == workerproto.QueueName(c.Labels) {
		capacity := func() int { return d.capacity(c.Labels) }
		g := d.gate(workerproto.QueueName(c.Labels))
		if !g.acquire(ctx, c.TenantID, deadline, capacity) {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			d.metrics.outcome("", "unavailable")
			out.Err = errs.As(errs.E(errs.DependencyUnavailable,
				"no worker labelled %s took %s within %s (%d live workers match)",
				formatLabels(c.Labels), c.what(), c.Timeout, d.matching(c.Labels, c.TenantID)))
			return out, nil
		}
		defer func() { g.release(capacity()) }()
	}
	for {
		out.Attempts++
		queue := d.queueFor(c.Labels, c.TenantID) // again on a retry: the dedicated worker may be gone
		taskID := strings.ToLower(ids.New("wtask_"))
		ch := newInbox()
		d.mu.Lock()
		d.pending[taskID] = ch
		d.mu.Unlock()
		release := func() {
			d.mu.Lock()
			delete(d.pending, taskID)
			d.mu.Unlock()
		}
		kind := workerproto.TaskTool
		if c.Model != nil {
			kind = workerproto.TaskModel
		}
		task := workerproto.Task{Kind: kind, Model: c.Model, TaskID: taskID, TenantID: c.TenantID, AgentID: c.AgentID, RunID: c.RunID, StepID: c.StepID,
			ToolCallID: c.ToolCallID, ToolID: c.ToolID, Input: c.Input, Auth: c.Auth, Deadline: deadline,
			IdempotencyKey: c.ToolCallID, Attempt: out.Attempts, Replica: d.replica, Traceparent: c.Traceparent}
		payload, err := json.Marshal(task)
		if err != nil {
			release()
			return out, errs.Wrap(errs.Internal, err, "encode task")
		}
		enqueued := d.cfg.Now()
		if err := d.cfg.Work.Enqueue(ctx, bus.Task{Queue: queue, ID: taskID, TenantID: c.TenantID, Payload: payload}); err != nil {
			release()
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			out.Err = errs.As(errs.Wrap(errs.DependencyUnavailable, err, "send %s to a worker: %v", c.what(), err))
			d.metrics.outcome("", "unavailable")
			return out, nil
		}
		retry, err := d.wait(ctx, c, &out, ch, deadline, enqueued)
		release()
		if err != nil || !retry {
			return out, err
		}
		d.metrics.retries.Inc()
		d.cfg.Logger.WarnContext(ctx, "worker died mid-task; sending the idempotent call again",
			"worker_id", out.WorkerID, "call", c.what(), "run_id", c.RunID, "attempt", out.Attempts+1)
	}
}

// wait waits for one task's outcome; retry says the worker died and the
// call may be sent again.
func (d *Dispatcher) wait(ctx context.Context, c Call, out *Outcome, ch *inbox, deadline, enqueued time.Time) (retry bool, err error) {
	timer := time.NewTimer(deadline.Sub(d.cfg.Now()))
	defer timer.Stop()
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	var worker string
	var startedAt time.Time
	seq := 0 // the last progress fragment passed on
	defer func() {
		if worker != "" {
			d.metrics.inFlight.WithLabelValues(worker).Dec()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-ch.ready:
			for _, r := range ch.take() {
				switch r.r.Kind {
				case workerproto.ResultStarted:
					if worker == "" {
						worker, startedAt = r.worker, d.cfg.Now()
						out.WorkerID = worker
						d.metrics.inFlight.WithLabelValues(worker).Inc()
						d.metrics.queueLag.WithLabelValues(worker).Observe(startedAt.Sub(enqueued).Seconds())
					}
				case workerproto.ResultProgress:
					switch {
					case r.r.Seq <= seq || c.OnProgress == nil: // a duplicate
					case r.r.Seq != seq+1:
						d.metrics.outcome(r.worker, "error")
						out.Err = errs.As(errs.E(errs.DependencyUnavailable,
							"lost stream fragments from worker %s (got %d after %d)", r.worker, r.r.Seq, seq))
						return false, nil
					default:
						seq = r.r.Seq
						if err := c.OnProgress(r.r.Output); err != nil {
							out.Err = errs.As(err)
							return false, nil
						}
					}
				case workerproto.ResultDone:
					if worker == "" {
						worker = r.worker
						out.WorkerID = worker
						d.metrics.inFlight.WithLabelValues(worker).Inc()
					}
					out.Output = r.r.Output
					outcome := "ok"
					if r.r.Error != nil {
						out.Output = nil
						out.Err = &errs.Error{Code: errs.Code(r.r.Error.Code), Message: r.r.Error.Message}
						outcome = "error"
						if out.Err.Code == errs.Timeout {
							outcome = "timeout"
						}
					}
					d.metrics.outcome(worker, outcome)
					return false, nil
				}
			}
		case <-tick.C:
			if worker == "" || d.alive(worker, startedAt) {
				continue
			}
			// Streamed fragments already reached the caller: sending the
			// call again would repeat them.
			if c.Idempotent && seq == 0 && d.cfg.Now().Before(deadline) {
				d.metrics.outcome(worker, "retried")
				return true, nil
			}
			d.metrics.outcome(worker, "interrupted")
			if c.Model != nil {
				// dependency_unavailable, not interrupted: a model call has no
				// side effect, and model-policy's router may fall back to the
				// next backend.
				out.Err = errs.As(errs.E(errs.DependencyUnavailable,
					"worker %s stopped heartbeating after streaming %d fragments from %s", worker, seq, c.what()))
				return false, nil
			}
			out.Err = &errs.Error{Code: CodeInterrupted, Message: fmt.Sprintf(
				"worker %s stopped heartbeating while it ran tool %s; the tool is not idempotent, so it was not run again", worker, c.ToolID)}
			return false, nil
		case <-timer.C:
			if worker == "" {
				d.metrics.outcome("", "unavailable")
				out.Err = errs.As(errs.E(errs.DependencyUnavailable,
					"no worker labelled %s took %s within %s (%d live workers match)",
					formatLabels(c.Labels), c.what(), c.Timeout, d.matching(c.Labels, c.TenantID)))
				return false, nil
			}
			d.metrics.outcome(worker, "timeout")
			out.Err = errs.As(errs.E(errs.Timeout, "%s did not finish on worker %s within %s", c.what(), worker, c.Timeout))
			return false, nil
		}
	}
}

// queueFor is the queue of a call placed on labels for tenant: the
// tenant's own queue when a live worker dedicated to it matches, else the
// shared one. A dedicated worker serves only its tenants, and they get it
// first: their calls never wait behind other tenants' on the shared pool.
func (d *Dispatcher) queueFor(labels map[string]string, tenant string) string {
	for _, w := range d.Live() {
		if !w.Draining && slices.Contains(w.Tenants, tenant) && workerproto.Matches(labels, w.Labels) {
			return workerproto.TenantQueueName(labels, tenant)
		}
	}
	return workerproto.QueueName(labels)
}

// matching counts the live workers that could take a call placed on
// labels for tenant.
func (d *Dispatcher) matching(labels map[string]string, tenant string) int {
	n := 0
	for _, w := range d.Live() {
		if workerproto.Matches(labels, w.Labels) && (len(w.Tenants) == 0 || slices.Contains(w.Tenants, tenant)) {
			n++
		}
	}
	return n
}

func formatLabels(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}
