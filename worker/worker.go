// Package worker is `agentos serve worker`: a worker node. It connects to
// the NATS bus with its own credential (an nkey an admin registered),
// announces its labels and the tools it can run every second, pulls the
// tasks placed on labels it carries, runs each with internal/tools and
// reports the outcome to the orchestrator replica that sent it.
//
// A worker decides nothing: no policy check, no choice of the next step,
// no retry. It takes a task off the queue (ack) before running it, so a
// task runs at most once per delivery; if the worker dies mid-task the
// orchestrator notices the missing heartbeats and decides (internal/
// dispatch). SIGTERM drains: no new task is taken, those in flight
// finish, then the worker leaves.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	natsio "github.com/nats-io/nats.go"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/workerproto"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

// DefaultConcurrency is how many tasks a worker runs at once by default.
const DefaultConcurrency = 4

// Config configures a worker.
type Config struct {
	ID     string
	Labels map[string]string
	// Tenants, when not empty, are the only tenants whose tasks the
	// worker takes (it pulls from their queues, not the shared ones; the
	// bus's permissions say the same).
	Tenants []string
	// Concurrency bounds the tasks in flight (default DefaultConcurrency).
	Concurrency int
	// Conn is the worker's NATS connection, Work its queues (the same
	// bus, dialed with the worker's nkey and inbox prefix).
	Conn      *natsio.Conn
	Work      bus.Work
	Namespace string
	// Tools are the tools this worker runs.
	Tools *tools.Registry
	// Models are the model endpoints this worker fronts, by name (the
	// catalogue's worker backends name them); it forwards model tasks to
	// them (models.go).
	Models map[string]providers.Provider
	Logger *slog.Logger
}

// Worker runs tasks.
type Worker struct {
	cfg  Config
	subj workerproto.Subjects
	sem  chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	inFlight int
	draining bool
}

// New checks cfg.
func New(cfg Config) (*Worker, error) {
	if cfg.ID == "" || cfg.Conn == nil || cfg.Work == nil || cfg.Tools == nil {
		return nil, errors.New("worker: ID, Conn, Work and Tools are required")
	}
	if len(cfg.Labels) == 0 {
		return nil, errs.Field("labels", "a worker needs at least one label (tasks are placed by labels)")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "agentos"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Worker{cfg: cfg, subj: workerproto.Subjects{NS: cfg.Namespace}, sem: make(chan struct{}, cfg.Concurrency)}, nil
}

// pullWait is the pause after a failed pull (the bus reconnecting).
const pullWait = time.Second

// Run works until ctx ends, then drains: it takes no new task, lets
// those in flight finish, and returns.
func (w *Worker) Run(ctx context.Context) error {
	var consumers []bus.Consumer
	for _, q := range workerproto.Queues(w.cfg.Labels, w.cfg.Tenants) {
		c, err := w.cfg.Work.Consume(ctx, bus.ConsumeParams{Queue: q, AckWait: 5 * time.Second})
		if err != nil {
			return fmt.Errorf("open work queue %s: %w", q, err)
		}
		consumers = append(consumers, c)
	}
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); w.heartbeat(hbCtx) }()
	w.cfg.Logger.Info("worker ready", "worker_id", w.cfg.ID, "labels", w.cfg.Labels, "tenants", w.cfg.Tenants, "tools", w.cfg.Tools.IDs(),
		"concurrency", w.cfg.Concurrency)

	var pullers sync.WaitGroup
	for _, c := range consumers {
		pullers.Add(1)
		go func() { defer pullers.Done(); w.pull(ctx, c) }()
	}
	pullers.Wait()
	for _, c := range consumers {
		_ = c.Close()
	}
	w.mu.Lock()
	w.draining = true
	n := w.inFlight
	w.mu.Unlock()
	w.cfg.Logger.Info("worker draining", "worker_id", w.cfg.ID, "in_flight", n)
	w.sendHeartbeat()
	w.wg.Wait()
	stopHB()
	<-hbDone
	w.sendHeartbeat()
	_ = w.cfg.Conn.Flush()
	w.cfg.Logger.Info("worker stopped", "worker_id", w.cfg.ID)
	return nil
}

// pull takes tasks from one queue while a slot is free, until ctx ends.
// Waiting for a task holds no slot (a worker pulls from several queues,
// and one idle queue must not keep the others' tasks waiting); a task
// that arrives when another queue's filled the last slot waits for one.
func (w *Worker) pull(ctx context.Context, c bus.Consumer) {
	for {
		for len(w.sem) == cap(w.sem) {
			select {
			case <-time.After(5 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
		// No timeout of our own: a pull abandoned while the server still
		// holds it could be handed a task nobody reads (redelivered only
		// after AckWait). The consumer bounds its pulls itself.
		d, err := c.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.cfg.Logger.Warn("pull a task", "worker_id", w.cfg.ID, "err", err)
			select {
			case <-time.After(pullWait):
			case <-ctx.Done():
				return
			}
			continue
		}
		w.sem <- struct{}{}
		w.mu.Lock()
		w.inFlight++
		w.mu.Unlock()
		w.wg.Add(1)
		go func() {
			defer func() {
				w.mu.Lock()
				w.inFlight--
				w.mu.Unlock()
				<-w.sem
				w.wg.Done()
			}()
			w.handle(ctx, d)
		}()
	}
}

// handle runs one delivered task. It is taken off the queue first: a
// worker that dies after this point never hands the task to another
// one; the orchestrator decides whether to send it again.
func (w *Worker) handle(ctx context.Context, d bus.Delivery) {
	// Finishing a task outlives SIGTERM (drain); its deadline bounds it.
	ctx = context.WithoutCancel(ctx)
	var task workerproto.Task
	if err := json.Unmarshal(d.Task().Payload, &task); err != nil || task.TaskID == "" || task.Replica == "" {
		w.cfg.Logger.Warn("dropping a malformed task", "worker_id", w.cfg.ID, "task_id", d.Task().ID)
		_ = d.Ack(ctx)
		return
	}
	if err := d.Ack(ctx); err != nil {
		w.cfg.Logger.Warn("ack task", "worker_id", w.cfg.ID, "task_id", task.TaskID, "err", err)
		return // still queued: another delivery will come
	}
	left := time.Until(task.Deadline)
	if left <= 0 {
		w.cfg.Logger.Info("dropping a task past its deadline", "worker_id", w.cfg.ID, "task_id", task.TaskID)
		return
	}
	w.report(ctx, task, workerproto.Result{TaskID: task.TaskID, Kind: workerproto.ResultStarted}, false)
	res := workerproto.Result{TaskID: task.TaskID, Kind: workerproto.ResultDone}
	start := time.Now()
	tool, ok := w.cfg.Tools.Get(task.ToolID)
	switch {
	case task.Kind == workerproto.TaskModel:
		res.Output, res.Error = w.runModel(ctx, task, left)
	case task.Kind != "" && task.Kind != workerproto.TaskTool:
		res.Error = &workerproto.ErrorBody{Code: string(errs.InvalidRequest), Message: fmt.Sprintf("task kind %q is not tool or model", task.Kind)}
	case !ok:
		res.Error = &workerproto.ErrorBody{Code: string(errs.NotFound),
			Message: fmt.Sprintf("tool %s is not available on worker %s", task.ToolID, w.cfg.ID)}
	default:
		out, err := tools.InvokeTool(ctx, tool, tools.Call{Auth: task.Auth, TenantID: task.TenantID, AgentID: task.AgentID,
			RunID: task.RunID, ToolCallID: task.ToolCallID, Input: task.Input}, left)
		if err != nil {
			res.Error = errorBody(err)
		} else {
			res.Output = out
		}
	}
	res.DurationMs = time.Since(start).Milliseconds()
	w.report(ctx, task, res, true)
}

// errorBody is err as a result's error (the contract's error object).
func errorBody(err error) *workerproto.ErrorBody {
	e := errs.As(err)
	msg := e.Message
	if e.Code == errs.Internal && msg == "" {
		msg = "internal error"
	}
	return &workerproto.ErrorBody{Code: string(e.Code), Message: msg}
}

// resultWait bounds one wait for the orchestrator's receipt.
const resultWait = 2 * time.Second

// report sends a result to the replica waiting for it. A final result is
// sent again until the replica confirms it or the task's deadline (plus
// a receipt's wait) has passed; a progress report is sent once.
func (w *Worker) report(ctx context.Context, task workerproto.Task, r workerproto.Result, final bool) {
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	subject := w.subj.Result(w.cfg.ID, task.Replica, task.TaskID)
	if !final {
		_ = w.cfg.Conn.Publish(subject, data)
		return
	}
	until := task.Deadline.Add(resultWait)
	for {
		rctx, cancel := context.WithTimeout(ctx, resultWait)
		_, err := w.cfg.Conn.RequestWithContext(rctx, subject, data)
		cancel()
		if err == nil || errors.Is(err, natsio.ErrConnectionClosed) || time.Now().After(until) {
			if err != nil {
				w.cfg.Logger.Warn("result not confirmed", "worker_id", w.cfg.ID, "task_id", task.TaskID, "err", err)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *Worker) heartbeat(ctx context.Context) {
	t := time.NewTicker(workerproto.HeartbeatInterval)
	defer t.Stop()
	for {
		w.sendHeartbeat()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) sendHeartbeat() {
	w.mu.Lock()
	hb := workerproto.Heartbeat{WorkerID: w.cfg.ID, Labels: w.cfg.Labels, Tools: w.cfg.Tools.IDs(), Models: w.modelNames(), Tenants: w.cfg.Tenants,
		Concurrency: w.cfg.Concurrency, InFlight: w.inFlight, Draining: w.draining, Time: time.Now().UTC()}
	w.mu.Unlock()
	data, _ := json.Marshal(hb)
	_ = w.cfg.Conn.Publish(w.subj.Heartbeat(w.cfg.ID), data)
}
