package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/metrics"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/version"
	"github.com/nexixai/agentos/modelpolicy"
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
	authFailures := metrics.NewAuthFailures(registry, modelpolicy.ServiceName)
	authn, err := newAuthenticator(cfg, st, signer, modelpolicy.ServiceName, authFailures)
	if err != nil {
		return err
	}
	srv, err := modelpolicy.New(modelpolicy.Config{
		Store: st, Authenticate: authn.Middleware, Limiter: newLimiter(st, log), Audit: audit.New(st, sink),
		Catalogue: cat, Registry: registry, Logger: log, NodeID: cfg.StackID,
		DefaultInvokeQPS: cfg.QuotaInvokeQPS, Version: version.Version,
		HTTPClient: outbound.ModelClient(outbound.ForModels(cfg)),
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
