package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	natsbus "github.com/nexixai/agentos/internal/bus/nats"

	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/metrics"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/version"
	"github.com/nexixai/agentos/modelpolicy"
	"github.com/nexixai/agentos/modelpolicy/providers"
	"github.com/nexixai/agentos/modelpolicy/providers/workerpool"
)

// RunModelPolicy serves model-policy until ctx ends. It reads tenants,
// entitlements and quotas from the same store as the orchestrator.
func RunModelPolicy(ctx context.Context, cfg config.Config) error {
	log := newLogger(cfg, modelpolicy.ServiceName)
	stopTracing, err := startTracing(ctx, cfg, modelpolicy.ServiceName, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	log.Info("file-descriptor limit", "fd_limit", raiseFDLimit(log))
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	cat := modelpolicy.DefaultCatalogue()
	if cfg.ModelPolicyConfig != "" {
		if cat, err = modelpolicy.LoadCatalogue(cfg.ModelPolicyConfig); err != nil {
			return fmt.Errorf("model catalogue %s: %w", cfg.ModelPolicyConfig, err)
		}
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
	registry := metrics.NewRegistry()
	workerProviders, closeWorkers, err := openModelWorkers(ctx, cfg, cat, registry, log)
	if err != nil {
		return err
	}
	defer closeWorkers()
	authFailures := metrics.NewAuthFailures(registry, modelpolicy.ServiceName)
	authn, err := newAuthenticator(cfg, st, signer, modelpolicy.ServiceName, authFailures)
	if err != nil {
		return err
	}
	srv, err := modelpolicy.New(modelpolicy.Config{
		Store: st, Authenticate: authn.Middleware, Limiter: newLimiter(st, log), Audit: audit.New(st, sink),
		Catalogue: cat, Registry: registry, Logger: log, NodeID: cfg.StackID,
		DefaultInvokeQPS: cfg.QuotaInvokeQPS, Version: version.Version,
		HTTPClient: outbound.ModelClient(outbound.ForModels(cfg)), Providers: workerProviders,
		// st already serves tenants through storecache; a second cache in
		// model-policy would only add staleness.
		TenantTTL: -1,
	})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	err = serveHTTP(ctx, cfg, cfg.ModelPolicyAddr, srv.Handler(), log)
	// Settle leased budget and write queued usage and audit records before
	// the store and the audit sink close.
	return errors.Join(err, srv.Stop())
}

// openModelWorkers builds the catalogue's worker backends: a connection
// to the NATS bus and a dispatcher of model tasks to the workers that
// front those models. Without worker backends it connects nothing; with
// them but no bus, model-policy refuses to start (modelpolicy.New).
func openModelWorkers(ctx context.Context, cfg config.Config, cat *modelpolicy.Catalogue, reg *prometheus.Registry,
	log *slog.Logger) (map[string]providers.Provider, func(), error) {
	backends := cat.WorkerBackends()
	if len(backends) == 0 || cfg.BusURL == "" {
		return nil, func() {}, nil
	}
	dctx, cancel := context.WithTimeout(ctx, busDialTimeout)
	defer cancel()
	host, _ := os.Hostname()
	b, err := natsbus.Dial(dctx, natsbus.Config{URL: cfg.BusURL, Replicas: cfg.BusReplicas, NkeySeedFile: cfg.BusNkeyFile,
		Name: fmt.Sprintf("%s %s pid %d", modelpolicy.ServiceName, host, os.Getpid())})
	if err != nil {
		return nil, nil, fmt.Errorf("AGENTOS_BUS_URL: %w", err)
	}
	d, err := openWorkers(cfg, b, reg, log)
	if err != nil {
		_ = b.Close()
		return nil, nil, err
	}
	out := map[string]providers.Provider{}
	for _, bc := range backends {
		out[bc.Name] = workerpool.New(workerpool.Config{Name: bc.Name, Labels: bc.Placement.Labels, Endpoint: bc.Endpoint,
			Timeout: bc.Timeout, Dispatch: d})
	}
	return out, func() { d.Close(); _ = b.Close() }, nil
}
