package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexixai/agentos/agentorchestrator"
	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/bus/inproc"
	natsbus "github.com/nexixai/agentos/internal/bus/nats"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/dispatch"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/metrics"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/tenancy"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
)

// RunOrchestrator serves the agent orchestrator until ctx ends.
func RunOrchestrator(ctx context.Context, cfg config.Config) error {
	log := newLogger(cfg, agentorchestrator.ServiceName)
	stopTracing, err := startTracing(ctx, cfg, agentorchestrator.ServiceName, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	// One descriptor a stream: the client's connection.
	streams := events.NewGate(streamCap(cfg, 1, log))
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if cfg.DevMode() {
		res, err := tenancy.Seed(ctx, st, cfg)
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		log.Info("seeded", "result", res)
	}
	signer, err := nodeSigner(cfg)
	if err != nil {
		return err
	}
	sink, err := audit.OpenSink(cfg.AuditSink)
	if err != nil {
		return fmt.Errorf("audit sink %q: %w", cfg.AuditSink, err)
	}
	defer sink.Close()
	auditor := audit.New(st, sink)

	// The executor calls model-policy on behalf of a run's principal with a
	// short-lived token signed by the node key, which every service of the
	// node trusts. The token names the orchestrator as its actor ("act"),
	// so model-policy's audit records show the orchestrator acting on
	// behalf of the run's principal.
	tokens := signer.NewMintCache("model-policy", 5*time.Minute)
	mint := func(r *http.Request, ac auth.Context) error {
		ac.Actor = auth.OrchestratorPrincipalID
		tok, err := tokens.Token(ac)
		if err != nil {
			return err
		}
		r.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
	// No overall client timeout: the run's context bounds each call, and
	// the outbound bounds (ForModels) a model-policy that stops answering.
	model := modelport.NewHTTPClient(cfg.ModelPolicyURL, mint, outbound.Client(outbound.ForModels(cfg), nil))
	// Searchable memory, shared by /v1/memory and tool.memory.*: its
	// embeddings go through model-policy like the runs' chat calls.
	mem := agentorchestrator.NewMemory(st, model)
	reg := tools.NewRegistry()
	allow, err := builtin.ParseAllow(cfg.HTTPFetchAllow)
	if err != nil {
		return fmt.Errorf("AGENTOS_HTTP_FETCH_ALLOW: %w", err)
	}
	artifacts, err := openArtifacts(ctx, cfg, st, auditor, log)
	if err != nil {
		return err
	}
	if err := builtin.Register(reg, builtin.Deps{KV: st, Memory: mem,
		KVQuota: func(ctx context.Context, tenantID string) (int64, error) {
			t, err := st.GetTenant(ctx, tenantID)
			return t.Quotas.Storage.MaxMemoryBytes, err
		},
		HTTPFetch: builtin.HTTPFetchConfig{Allow: allow, Artifacts: artifacts,
			ArtifactThreshold: int64(cfg.HTTPFetchArtifactThreshold)}}); err != nil {
		return err
	}

	health := outbound.Client(outbound.FromConfig(cfg), nil)

	b, storePoll, err := openBus(ctx, cfg, st)
	if err != nil {
		return err
	}
	// Closed after srv.Stop (deferred below, so run first): the
	// executors publish until they return.
	defer b.Close()

	registry := metrics.NewRegistry()
	authn, err := newAuthenticator(cfg, st, signer, agentorchestrator.ServiceName, metrics.NewAuthFailures(registry, agentorchestrator.ServiceName))
	if err != nil {
		return err
	}
	ready := map[string]func(context.Context) error{
		"model-policy": func(ctx context.Context) error { return pingHealth(ctx, health, cfg.ModelPolicyURL+"/v1/health") },
	}
	if p, ok := b.(bus.Pinger); ok {
		// NATS: not ready while disconnected (nats.go reconnects by itself).
		ready["bus"] = p.Ping
	}
	workers, err := openWorkers(cfg, b, registry, log)
	if err != nil {
		return err
	}
	if workers != nil {
		defer workers.Close()
	}
	srv, err := agentorchestrator.New(agentorchestrator.Config{
		Workers: workersPort(workers),
		Store:   st, Queue: st.Queue, Authenticate: authn.Middleware, Audit: auditor, Streams: streams,
		Limiter: newLimiter(st, log), Model: model, Tools: reg, Memory: mem, Artifacts: artifacts,
		Registry: registry, Logger: log, Node: cfg,
		Executors: cfg.Executors, Bus: b, StorePoll: storePoll, LeaseTTL: cfg.RunLeaseTTL,
		ReadyChecks: ready,
		ModelProbe:  func(ctx context.Context) error { return pingHealth(ctx, health, cfg.ModelPolicyURL+"/v1/health") },
	})
	if err != nil {
		return err
	}
	// The scheduler and the idempotency purge; Stop waits for both (and
	// the executors), and runs before the store closes.
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Stop()
	if cfg.AuditCheckpointInterval > 0 {
		// The orchestrator signs the chain head periodically (and once more
		// on a clean stop, before the store closes).
		cp := &audit.Checkpointer{Log: st, Path: cfg.AuditCheckpointFile, Signer: signer, Logger: log}
		done := make(chan struct{})
		go func() {
			defer close(done)
			cp.Run(ctx, cfg.AuditCheckpointInterval)
		}()
		defer func() { <-done }()
	}
	return serveHTTP(ctx, cfg, cfg.OrchestratorAddr, srv.Handler(), log)
}

// natsStorePoll is how often an SSE stream re-reads the store when the
// bus is NATS: every replica's events arrive over the bus, so the poll
// only catches a failed publish (counted in agentos_bus_errors_total).
const natsStorePoll = 10 * time.Second

// busDialTimeout bounds connecting to NATS and making its streams.
const busDialTimeout = 30 * time.Second

// openBus returns the orchestrator's bus (cfg.BusURL: empty for the
// in-process bus, with the store as its history; else NATS JetStream)
// and the SSE store poll interval that goes with it.
func openBus(ctx context.Context, cfg config.Config, st bus.History) (bus.Bus, time.Duration, error) {
	if cfg.BusURL == "" {
		return inproc.New(inproc.Config{History: st}), 0, nil // 0: the orchestrator's default poll
	}
	ctx, cancel := context.WithTimeout(ctx, busDialTimeout)
	defer cancel()
	host, _ := os.Hostname()
	// History: the local fan-out, one NATS consumer per replica for all
	// of its SSE streams, resumed from the store.
	b, err := natsbus.Dial(ctx, natsbus.Config{URL: cfg.BusURL, Replicas: cfg.BusReplicas, History: st, NkeySeedFile: cfg.BusNkeyFile,
		Name: fmt.Sprintf("%s %s pid %d", agentorchestrator.ServiceName, host, os.Getpid())})
	if err != nil {
		// The URL may carry credentials: name the setting, not the value.
		return nil, 0, fmt.Errorf("AGENTOS_BUS_URL: %w", err)
	}
	return b, natsStorePoll, nil
}

// openWorkers is the dispatcher of placed tool calls to worker nodes:
// nil without the NATS bus (the in-process bus has no workers).
func openWorkers(cfg config.Config, b bus.Bus, reg *prometheus.Registry, log *slog.Logger) (*dispatch.Dispatcher, error) {
	nb, ok := b.(*natsbus.Bus)
	if !ok {
		return nil, nil
	}
	d, err := dispatch.New(dispatch.Config{Conn: nb.Conn(), Work: nb, Namespace: nb.Namespace(),
		HeartbeatTimeout: cfg.WorkerHeartbeatTimeout, Registry: reg, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("worker dispatch: %w", err)
	}
	return d, nil
}

// workersPort keeps a nil dispatcher a nil interface.
func workersPort(d *dispatch.Dispatcher) agentorchestrator.Workers {
	if d == nil {
		return nil
	}
	return d
}

// pingHealth checks a dependency's health endpoint.
func pingHealth(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("unreachable: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health answered %d", resp.StatusCode)
	}
	return nil
}
