// Package workerpool is model-policy's adapter for models served by
// worker nodes: GPU-pinned model servers (vLLM, TGI, any OpenAI-wire
// server) that a worker fronts (`agentos serve worker --model-endpoint`).
// A catalogue backend of type worker names a placement (labels) and an
// endpoint; each call becomes a model task on the workers' JetStream
// work queue for those labels (internal/dispatch), taken by one matching
// worker, and its answer, with the backend's own usage, comes back over
// the bus. Streamed fragments come back as they are produced.
//
// Governance stays in model-policy: the request reaching this adapter
// has passed entitlements, policy (redaction) and budget reservation, and
// its usage is settled and audited by the caller as for any provider. The
// worker decides nothing.
package workerpool

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/dispatch"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/workerproto"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

// Dispatcher sends calls to workers (*dispatch.Dispatcher).
type Dispatcher interface {
	Run(ctx context.Context, c dispatch.Call) (dispatch.Outcome, error)
	Live() []dispatch.Worker
}

// Config is one worker backend.
type Config struct {
	// Name is the catalogue backend's name (in errors).
	Name string
	// Labels place the calls: a worker needs all of them.
	Labels map[string]string
	// Endpoint is the workers' model endpoint name.
	Endpoint string
	// Timeout bounds a call without a deadline of its own (default 60 s).
	Timeout  time.Duration
	Dispatch Dispatcher
}

// Provider is a worker backend.
type Provider struct{ cfg Config }

var _ providers.Provider = (*Provider)(nil)

// New returns the backend.
func New(cfg Config) *Provider {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	return &Provider{cfg: cfg}
}

// Kind returns "worker".
func (p *Provider) Kind() string { return "worker" }

// Chat runs a chat completion on a worker.
func (p *Provider) Chat(ctx context.Context, req providers.ChatRequest) (providers.ChatResponse, error) {
	var out providers.ChatResponse
	return out, p.call(ctx, workerproto.ModelChat, false, req, nil, &out)
}

// ChatStream runs a streamed chat completion on a worker: onDelta gets
// each fragment as the worker's backend produces it.
func (p *Provider) ChatStream(ctx context.Context, req providers.ChatRequest, onDelta func(providers.Delta) error) (providers.ChatResponse, error) {
	var out providers.ChatResponse
	progress := func(raw json.RawMessage) error {
		var d providers.Delta
		if err := json.Unmarshal(raw, &d); err != nil {
			return errs.Wrap(errs.DependencyUnavailable, err, "backend %s: a malformed stream fragment from a worker", p.cfg.Name)
		}
		return onDelta(d)
	}
	return out, p.call(ctx, workerproto.ModelChat, true, req, progress, &out)
}

// Embed computes embeddings on a worker.
func (p *Provider) Embed(ctx context.Context, req providers.EmbedRequest) (providers.EmbedResponse, error) {
	var out providers.EmbedResponse
	return out, p.call(ctx, workerproto.ModelEmbed, false, req, nil, &out)
}

// Health reports whether a live, non-draining worker with the labels
// serves the endpoint.
func (p *Provider) Health(context.Context) error {
	for _, w := range p.cfg.Dispatch.Live() {
		if !w.Draining && workerproto.Matches(p.cfg.Labels, w.Labels) && slices.Contains(w.Models, p.cfg.Endpoint) {
			return nil
		}
	}
	return errs.E(errs.DependencyUnavailable, "backend %s: no live worker with the placement's labels serves model endpoint %s",
		p.cfg.Name, p.cfg.Endpoint)
}

func (p *Provider) call(ctx context.Context, op string, stream bool, req any, progress func(json.RawMessage) error, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode the request for a worker")
	}
	timeout := p.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		// Ends a little before the caller's deadline, so a call no worker
		// took is reported as such (dependency_unavailable) rather than
		// as the caller's timeout.
		left := time.Until(dl)
		timeout = left - min(time.Second, left/10)
	}
	c := dispatch.Call{Labels: p.cfg.Labels, Timeout: timeout, Idempotent: true, OnProgress: progress,
		Model: &workerproto.ModelCall{Endpoint: p.cfg.Endpoint, Op: op, Stream: stream, Request: body}}
	// The tenant queues the task (the bus requires one) and picks a
	// tenant's dedicated workers first. model-policy calls backends only
	// inside an authenticated request.
	ac, ok := auth.From(ctx)
	if !ok || ac.TenantID == "" {
		return errs.E(errs.Internal, "backend %s: a worker call outside a tenant's request", p.cfg.Name)
	}
	c.TenantID = ac.TenantID
	res, err := p.cfg.Dispatch.Run(ctx, c)
	if err != nil {
		return err // ctx ended
	}
	if res.Err != nil {
		e := *res.Err
		e.Message = "backend " + p.cfg.Name + ": " + e.Message
		return &e
	}
	if err := json.Unmarshal(res.Output, out); err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "backend %s: a malformed answer from worker %s", p.cfg.Name, res.WorkerID)
	}
	return nil
}
