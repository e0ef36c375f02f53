// Package node is the composition root: it turns the effective
// configuration into adapters and services and runs them until the context
// ends. Each Run* function serves one service in the foreground.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/queue"
	queuepostgres "github.com/nexixai/agentos/internal/queue/postgres"
	queuesqlite "github.com/nexixai/agentos/internal/queue/sqlite"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/internal/store/storecache"
	"github.com/nexixai/agentos/internal/tenancy"
	"github.com/nexixai/agentos/internal/tracing"
	"github.com/nexixai/agentos/internal/version"
)

// newLogger returns the JSON logger of a service.
func newLogger(cfg config.Config, service string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	l := slog.New(httpx.TraceLogHandler(newLogHandler(os.Stderr, &slog.HandlerOptions{Level: level}))).
		With("service", service, "stack_id", cfg.StackID)
	slog.SetDefault(l)
	return l
}

// startTracing installs the service's span exporter when
// OTEL_EXPORTER_OTLP_ENDPOINT is set (nothing otherwise) and returns the
// function that flushes it when the service stops.
func startTracing(ctx context.Context, cfg config.Config, service string, log *slog.Logger) (func(), error) {
	shutdown, err := tracing.Setup(ctx, tracing.Options{
		TracesURL: cfg.OTLPTracesURL, Sampler: cfg.TracesSampler, SamplerArg: cfg.TracesSamplerArg,
		Service: service, Version: version.Version, StackID: cfg.StackID, ModelContent: cfg.TraceCaptureContent,
		HTTPClient: outbound.Client(outbound.FromConfig(cfg), nil),
	})
	if err != nil {
		return nil, err
	}
	if cfg.OTLPTracesURL != "" {
		log.Info("exporting traces", "otlp_traces_url", redactURL(cfg.OTLPTracesURL),
			"sampler", cfg.TracesSampler, "sampler_arg", cfg.TracesSamplerArg, "capture_content", cfg.TraceCaptureContent)
	}
	return func() {
		// The service's context is done by now: flushing gets its own.
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(fctx); err != nil {
			log.Warn("flushing traces", "err", err)
		}
	}, nil
}

// Backend is the node's store and the run queue that lives beside it in
// the same database. Store is wrapped in a short-lived tenant and agent cache
// (internal/store/storecache): every request reads its tenant.
type Backend struct {
	store.Store
	Queue queue.Queue
	// Buckets holds rate-limit token buckets shared by every replica on
	// the store (PostgreSQL); nil for SQLite, which is one process.
	Buckets tenancy.TokenBuckets
}

// newLimiter is the rate limiter of a service on b: one shared by every
// replica when the store is PostgreSQL (exact across replicas), else the
// in-process one.
func newLimiter(b *Backend, log *slog.Logger) tenancy.RateLimiter {
	if b.Buckets != nil {
		return tenancy.NewSharedLimiter(b.Buckets, log)
	}
	return tenancy.NewLimiter()
}

// OpenBackend opens the store and queue cfg.StoreURL names: sqlite:// (the
// embedded default) or postgres:// (shared by replicas).
func OpenBackend(ctx context.Context, cfg config.Config) (*Backend, error) {
	if postgres.IsURL(cfg.StoreURL) {
		db, err := postgres.OpenWith(ctx, cfg.StoreURL, postgres.Options{MaxConns: cfg.PostgresMaxConns,
			StatementTimeout: cfg.PostgresStatementTimeout, ConnectTimeout: cfg.PostgresConnectTimeout})
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", redactURL(cfg.StoreURL), err)
		}
		return &Backend{Store: storecache.New(db, 0), Queue: queuepostgres.New(db), Buckets: db}, nil
	}
	db, err := sqlite.OpenURL(ctx, cfg.StoreURL)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", redactURL(cfg.StoreURL), err)
	}
	return &Backend{Store: storecache.New(db, 0), Queue: queuesqlite.New(db)}, nil
}

func openStore(ctx context.Context, cfg config.Config) (*Backend, error) {
	return OpenBackend(ctx, cfg)
}

func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at > 0 {
		if scheme := strings.Index(u, "://"); scheme > 0 && scheme < at {
			return u[:scheme+3] + "***" + u[at:]
		}
	}
	return u
}

// nodeSigner loads the node key (cfg.NodeKeyPath); demo/dev create it,
// prod requires it (no secret is generated in prod).
func nodeSigner(cfg config.Config) (*auth.NodeSigner, error) {
	s, err := auth.LoadOrCreateNodeKey(cfg.NodeKeyPath(), cfg.DevMode())
	if err != nil && !cfg.DevMode() {
		return nil, fmt.Errorf("%w (prod mode generates no secrets: run `agentos bootstrap` or set AGENTOS_NODE_KEY_FILE)", err)
	}
	return s, err
}

// authStore is what the authenticator reads: tenants and API tokens.
type authStore interface {
	auth.TenantLookup
	auth.TokenLookup
}

// newAuthenticator builds the request authenticator of one service
// (service is its name: "agent-orchestrator", "model-policy" or
// "federation"). It trusts the operator's configured JWT issuers
// (jwtIssuers) and the node key only for tokens minted for this service,
// so that a token minted for model-policy is refused by the orchestrator.
func newAuthenticator(cfg config.Config, st authStore, signer *auth.NodeSigner, service string, onFailure func(string)) (*auth.Authenticator, error) {
	if service == "" {
		return nil, errors.New("newAuthenticator: the service name is required")
	}
	issuers, err := jwtIssuers(cfg)
	if err != nil {
		return nil, err
	}
	issuers = append(issuers, signer.IssuerFor(service))
	return auth.New(auth.Config{Mode: cfg.Mode, Tenants: st, Tokens: st,
		Issuers: issuers, BootstrapToken: cfg.BootstrapAdminToken, OnFailure: onFailure,
		HTTPClient: auth.NewJWKSClient(outbound.FromConfig(cfg))})
}

// jwtIssuers returns the JWT issuers the operator configured (CONTRACT §3):
// those of AGENTOS_JWT_ISSUERS_FILE, plus the one described by
// AGENTOS_JWT_ISSUER, AGENTOS_JWT_AUDIENCE and one or more of
// AGENTOS_JWT_JWKS_URL, AGENTOS_JWT_PUBLIC_KEY_FILE and
// AGENTOS_JWT_HS256_SECRET_FILE. Prod rules apply in prod mode (audience
// required, https JWKS). None configured is fine: API tokens still work.
func jwtIssuers(cfg config.Config) ([]auth.Issuer, error) {
	prod := cfg.Mode == config.ModeProd
	var out []auth.Issuer
	if cfg.JWTIssuersFile != "" {
		iss, err := auth.LoadIssuersFile(cfg.JWTIssuersFile, prod)
		if err != nil {
			return nil, fmt.Errorf("AGENTOS_JWT_ISSUERS_FILE: %w", err)
		}
		out = append(out, iss...)
	}
	spec, ok, err := envIssuerSpec(cfg)
	if err != nil || !ok {
		return out, err
	}
	iss, err := spec.Load(auth.IssuerLoadOptions{Prod: prod})
	if err != nil {
		return nil, fmt.Errorf("AGENTOS_JWT_*: %w", err)
	}
	for _, o := range out {
		if o.Issuer == iss.Issuer {
			return nil, fmt.Errorf("AGENTOS_JWT_ISSUER %q is also configured in AGENTOS_JWT_ISSUERS_FILE; configure it once", iss.Issuer)
		}
	}
	return append(out, iss), nil
}

// envIssuerSpec reads the single-issuer variables; ok is false when none
// is set.
func envIssuerSpec(cfg config.Config) (spec auth.IssuerSpec, ok bool, err error) {
	keyed := cfg.JWTJWKSURL != "" || cfg.JWTPublicKeyFile != "" || cfg.JWTHS256SecretFile != ""
	if cfg.JWTIssuer == "" {
		if keyed || cfg.JWTAudience != "" {
			return spec, false, errors.New("AGENTOS_JWT_ISSUER is required with AGENTOS_JWT_AUDIENCE, AGENTOS_JWT_JWKS_URL, AGENTOS_JWT_PUBLIC_KEY_FILE or AGENTOS_JWT_HS256_SECRET_FILE")
		}
		return spec, false, nil
	}
	if !keyed {
		return spec, false, errors.New("AGENTOS_JWT_ISSUER needs one of AGENTOS_JWT_JWKS_URL, AGENTOS_JWT_PUBLIC_KEY_FILE or AGENTOS_JWT_HS256_SECRET_FILE")
	}
	spec = auth.IssuerSpec{Issuer: cfg.JWTIssuer, JWKSURL: cfg.JWTJWKSURL, HS256SecretFile: cfg.JWTHS256SecretFile,
		Audience: strings.FieldsFunc(cfg.JWTAudience, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })}
	if cfg.JWTPublicKeyFile != "" {
		spec.PublicKeyFiles = map[string]string{"": cfg.JWTPublicKeyFile}
	}
	return spec, true, nil
}

// serveHTTP serves h on addr until ctx ends, then drains in-flight
// requests. Long-lived streams get their context canceled a few seconds
// into the drain so that shutdown completes.
func serveHTTP(ctx context.Context, cfg config.Config, addr string, h http.Handler, log *slog.Logger) error {
	h = withPprof(cfg.Pprof, addr, h, log)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another process using the port? try `lsof -i :%s`)", addr, err, portOf(addr))
	}
	return ServeListener(ctx, cfg, ln, h, log)
}

// ServeListener serves h on ln with the server limits of cfg, the same on
// every listener of the node (pprof shares its service's listener): the
// headers must arrive within HTTPReadHeaderTimeout and be at most
// HTTPMaxHeaderBytes, a body within HTTPBodyTimeout (httpx.BodyDeadline,
// which streamed responses outlive), and an idle keep-alive connection is
// closed after HTTPIdleTimeout. There is deliberately no ReadTimeout or
// WriteTimeout: they would cut SSE and streamed chat completions, whose
// writes are bounded one by one (events.WriteTimeout). Tests and harnesses
// that serve a service in process use it too, so they get the same limits.
func ServeListener(ctx context.Context, cfg config.Config, ln net.Listener, h http.Handler, log *slog.Logger) error {
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	if err := cfg.Finish(); err != nil { // fills zero limits with the defaults
		return err
	}
	srv := &http.Server{Handler: httpx.BodyDeadline(cfg.HTTPBodyTimeout)(h),
		ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout, IdleTimeout: cfg.HTTPIdleTimeout,
		MaxHeaderBytes: cfg.HTTPMaxHeaderBytes,
		BaseContext:    func(net.Listener) context.Context { return base }}
	srv.RegisterOnShutdown(func() {
		time.AfterFunc(3*time.Second, cancelBase)
	})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return p
}

// withPprof adds net/http/pprof under /debug/pprof/ when on (AGENTOS_PPROF)
// and the service listens on loopback (profiling a live node, e.g. under
// the load harness; profiles expose memory contents, so never elsewhere).
func withPprof(on bool, addr string, h http.Handler, log *slog.Logger) http.Handler {
	if !on {
		return h
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Warn("AGENTOS_PPROF ignored: the service does not listen on loopback", "addr", addr)
		return h
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	log.Info("pprof enabled", "path", "/debug/pprof/")
	return mux
}
