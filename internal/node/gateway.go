package node

import (
	"context"
	"crypto/x509"
	"fmt"
	"github.com/nexixai/agentos/console"
	"net/http"
	"os"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/gateway"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/metrics"
	"github.com/nexixai/agentos/internal/outbound"
)

// RunGateway serves the gateway until ctx ends. Its upstreams come from
// cfg.GatewayUpstreamsFile or, without one, are the node's own three
// services. Only dedicated pools make it open the store (see
// gatewayTenant).
func RunGateway(ctx context.Context, cfg config.Config) error {
	log := newLogger(cfg, gateway.ServiceName)
	stopTracing, err := startTracing(ctx, cfg, gateway.ServiceName, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	log.Info("file-descriptor limit", "fd_limit", raiseFDLimit(log))
	ups := gateway.Upstreams{Orchestrator: []string{cfg.OrchestratorURL},
		ModelPolicy: []string{cfg.ModelPolicyURL}, Federation: []string{cfg.FederationURL}}
	if cfg.GatewayUpstreamsFile != "" {
		var err error
		if ups, err = gateway.LoadUpstreams(cfg.GatewayUpstreamsFile); err != nil {
			return fmt.Errorf("AGENTOS_GATEWAY_UPSTREAMS_FILE: %w", err)
		}
	}
	gc := gateway.Config{Upstreams: ups, HealthInterval: cfg.GatewayHealthInterval, Logger: log,
		Registry: metrics.NewRegistry(), RootCAs: gatewayRoots(cfg), Timeouts: outbound.ForModels(cfg),
		Console: console.Handler(console.Config{Mode: cfg.Mode, DefaultTenant: cfg.DefaultTenant, TraceURL: cfg.ConsoleTraceURL})}
	if len(ups.Dedicated) > 0 {
		st, err := openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		if gc.Tenant, err = gatewayTenant(cfg, st); err != nil {
			return err
		}
	}
	g, err := gateway.New(gc)
	if err != nil {
		return err
	}
	g.Start(ctx)
	defer g.Stop()
	return serveHTTP(ctx, cfg, cfg.GatewayAddr, g.Handler(), log)
}

// gatewayTenant returns the tenant of a request exactly as the upstreams
// will establish it: with the same authenticator over the same store
// (API tokens, configured JWT issuers, the bootstrap token, and the
// X-Tenant-Id header alone only in demo and dev mode). So a header the
// upstream would refuse never routes a request to a dedicated pool. A
// request that fails authentication gets "" and goes to the shared pool,
// which refuses it as the dedicated one would have.
func gatewayTenant(cfg config.Config, st authStore) (gateway.TenantFunc, error) {
	issuers, err := jwtIssuers(cfg)
	if err != nil {
		return nil, err
	}
	authn, err := auth.New(auth.Config{Mode: cfg.Mode, Tenants: st, Tokens: st, Issuers: issuers, BootstrapToken: cfg.BootstrapAdminToken})
	if err != nil {
		return nil, err
	}
	return func(r *http.Request) string {
		ac, err := authn.Authenticate(r)
		if err != nil {
			return ""
		}
		return ac.TenantID
	}, nil
}

// gatewayRoots are the system roots plus the node's federation CA, if
// there is one: in prod the federation client API is served over TLS
// with a certificate that CA issued.
func gatewayRoots(cfg config.Config) *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if pem, err := os.ReadFile(federation.FilesIn(cfg.Home).CA); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	return pool
}
