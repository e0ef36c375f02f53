// Package modelpolicy is the Model Policy service: a governed model gateway
// (CONTRACT §5, DESIGN §5). Every call passes, in order (Server.invoke):
// tenant entitlements (tiers, backends) and the policy's model and backend
// lists → request limits (max_tokens_per_request, invoke QPS, requests per
// minute) and requirements → token/cost budget hold → input policy (tool
// entitlements and permissions, PII recognizers, CEL rules) → router (tier
// chain, canaries, circuit breakers, fallback) → provider → budget
// settlement and usage ledger → output policy. Every call, served or not,
// is counted in the metrics and audited once.
package modelpolicy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/metrics"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tenancy"
	"github.com/nexixai/agentos/modelpolicy/providers"
	"github.com/nexixai/agentos/modelpolicy/router"
)

// ServiceName is the name in /v1/health.
const ServiceName = "model-policy"

// Store is the storage model-policy needs: tenants, the usage ledger and
// budgets, and a ping for readiness. store.Store satisfies it.
type Store interface {
	GetTenant(ctx context.Context, tenantID string) (store.Tenant, error)
	store.UsageStore
	Ping(ctx context.Context) error
}

// AuditRecorder appends audit records; internal/audit's Auditor and
// AuditLogRecorder satisfy it.
type AuditRecorder interface {
	// RecordBatch appends rs in order, all of them or, on error, none.
	RecordBatch(ctx context.Context, rs []store.AuditRecord) ([]store.AuditRecord, error)
}

// AuditLogRecorder records straight into a store.AuditLog.
type AuditLogRecorder struct{ Log store.AuditLog }

// RecordBatch appends rs.
func (a AuditLogRecorder) RecordBatch(ctx context.Context, rs []store.AuditRecord) ([]store.AuditRecord, error) {
	return a.Log.AppendAudits(ctx, rs)
}

// Config configures a Server.
type Config struct {
	// Store is required.
	Store Store
	// Authenticate puts an auth.Context in the request context; required.
	// The server parses no credentials itself.
	Authenticate func(http.Handler) http.Handler
	// Limiter defaults to a new tenancy.Limiter (buckets keyed by tenant;
	// a changed quota adjusts its bucket without a refill).
	Limiter RateLimiter
	// Audit defaults to AuditLogRecorder over Store when it is a
	// store.AuditLog; otherwise it is required.
	Audit AuditRecorder
	// Catalogue defaults to DefaultCatalogue().
	Catalogue *Catalogue
	// Providers overrides the providers built from the catalogue, by
	// backend name (tests use it).
	Providers map[string]providers.Provider
	// Registry receives the metrics (default a new registry). /metrics is
	// served when it is also a prometheus.Gatherer.
	Registry prometheus.Registerer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// NodeID is reported in route.node (default "local").
	NodeID string
	// DefaultInvokeQPS is the per-tenant invoke rate (AGENTOS_QUOTA_INVOKE_QPS,
	// default 20; negative disables).
	DefaultInvokeQPS float64
	// Version is reported by /v1/health (default "0.0.0-dev").
	Version string
	// HTTPClient is used by provider adapters (default
	// outbound.ModelClient with its defaults; the whole call is bounded by
	// the catalogue's backend timeout).
	HTTPClient *http.Client
	// Now defaults to time.Now.
	Now func() time.Time
	// Tenants reads tenants for governed calls; default a TenantCache over
	// Store with TenantTTL. Give the Authenticator the same cache so a call
	// reads no tenant from the store.
	Tenants TenantGetter
	// TenantTTL is the default cache's TTL (0: DefaultTenantTTL, 1 s; a
	// negative TTL reads the store on every call). A disabled tenant is
	// refused within this time.
	TenantTTL time.Duration
	// SettleInterval is how often, between Start and Stop, leased budget
	// allocations are settled back to the store, returning their unused
	// part (default 5 s).
	SettleInterval time.Duration
	// FlushDelay is how long the ledger/audit writer waits to fill a batch
	// (default 10 ms).
	FlushDelay time.Duration
}

// Server is the model-policy HTTP service.
type Server struct {
	cfg       Config
	cat       *Catalogue
	provs     map[string]providers.Provider
	breakers  *router.Breakers
	latencies *router.Latencies
	limiter   RateLimiter
	audit     AuditRecorder
	log       *slog.Logger
	metrics   *serverMetrics
	httpm     *metrics.HTTP
	gatherer  prometheus.Gatherer
	now       func() time.Time
	started   time.Time // catalogue load time: "created" of OpenAI model objects

	healthMu   sync.Mutex
	health     map[string]error
	healthedAt time.Time

	tenants TenantGetter
	budgets *budgets
	writer  *recordWriter

	lifeMu  sync.Mutex    // guards the fields below: Start and Stop
	stop    chan struct{} // closed by Stop; nil until Start
	bgDone  chan struct{} // closed when the settle loop returns
	stopped bool
	stopErr error
}

// New validates cfg and builds the server. It starts no goroutine: Start
// starts the background work and Stop ends it.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("modelpolicy: Config.Store is required")
	}
	if cfg.Authenticate == nil {
		return nil, errors.New("modelpolicy: Config.Authenticate is required")
	}
	s := &Server{cfg: cfg, cat: cfg.Catalogue, limiter: cfg.Limiter, audit: cfg.Audit,
		log: cmp.Or(cfg.Logger, slog.Default()), now: cfg.Now}
	if s.cat == nil {
		s.cat = DefaultCatalogue()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.started = s.now()
	if s.limiter == nil {
		s.limiter = tenancy.NewLimiter()
	}
	if s.audit == nil {
		al, ok := cfg.Store.(store.AuditLog)
		if !ok {
			return nil, errors.New("modelpolicy: Config.Audit is required when Store is no store.AuditLog")
		}
		s.audit = AuditLogRecorder{Log: al}
	}
	if s.cfg.NodeID == "" {
		s.cfg.NodeID = "local"
	}
	if s.cfg.Version == "" {
		s.cfg.Version = "0.0.0-dev"
	}
	if s.cfg.DefaultInvokeQPS == 0 {
		s.cfg.DefaultInvokeQPS = 20
	}
	client := cfg.HTTPClient
	if client == nil {
		client = defaultBackendClient()
	}
	provs, err := s.cat.BuildProviders(client)
	if err != nil {
		return nil, err
	}
	for name, p := range cfg.Providers {
		provs[name] = p
	}
	for _, b := range s.cat.WorkerBackends() {
		if provs[b.Name] == nil {
			return nil, fmt.Errorf("backend %s is served by worker nodes: model-policy needs the NATS bus for it (set AGENTOS_BUS_URL)", b.Name)
		}
	}
	s.provs = provs
	s.breakers = router.NewBreakers(s.cat.breakerConfig(), s.now)
	s.latencies = router.NewLatencies()
	reg := cfg.Registry
	if reg == nil {
		r := metrics.NewRegistry()
		reg = r
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		s.gatherer = g
	}
	s.metrics = newServerMetrics(reg)
	s.httpm = metrics.NewHTTP(reg, ServiceName)

	s.tenants = cfg.Tenants
	if s.tenants == nil {
		s.tenants = cfg.Store
		if cfg.TenantTTL >= 0 {
			s.tenants = NewTenantCache(cfg.Store, cfg.TenantTTL)
		}
	}
	s.budgets = newBudgets(cfg.Store, s.log)
	s.writer = newRecordWriter(cfg.Store.RecordUsage, s.audit, s.log, func(audit bool) {
		if audit {
			s.metrics.auditErrors.Inc()
		}
	}, cfg.FlushDelay)
	return s, nil
}

// defaultBackendClient is the model backends' client when Config has
// none: the outbound bounds for calls waiting on a model, with their
// defaults (internal/node passes one built from the node's configuration).
func defaultBackendClient() *http.Client {
	return outbound.ModelClient(outbound.ModelDefaults())
}

// Start starts the background work: the flusher that writes queued usage
// and audit records in batches, and the settlement of leased budget
// allocations every SettleInterval. Until Start (and after Stop) the
// handler still serves, writing each record synchronously. Starting a
// started server does nothing; starting a stopped one is an error.
func (s *Server) Start() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.stopped {
		return errors.New("modelpolicy: Start after Stop")
	}
	if s.stop != nil {
		return nil
	}
	s.stop, s.bgDone = make(chan struct{}), make(chan struct{})
	s.writer.start()
	go s.settleLoop(s.stop, s.bgDone, cmp.Or(s.cfg.SettleInterval, 5*time.Second))
	return nil
}

// settleLoop settles the leased budget allocations every interval until
// stop is closed, then closes done.
func (s *Server) settleLoop(stop <-chan struct{}, done chan<- struct{}, every time.Duration) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.budgets.retireAll()
		}
	}
}

// Flush writes every queued usage and audit record and settles every
// leased budget allocation back to the store (returning its unused part);
// the server keeps serving. It waits for calls in flight on the settled
// allocations until ctx ends, then counts their estimates as used.
func (s *Server) Flush(ctx context.Context) error {
	berr := s.budgets.flush(ctx)
	werr := s.writer.Flush(ctx)
	return errors.Join(berr, werr)
}

// Stop ends the background work started by Start and waits for its
// goroutines, after a final flush: budget allocations are settled and
// every queued usage and audit record is written (audit is never lost on
// a clean shutdown). Call it after the HTTP server has shut down; it waits
// at most 10 s for calls still in flight. Idempotent (later calls return
// the first one's error), and valid without Start; records arriving after
// Stop are written synchronously.
func (s *Server) Stop() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.stopped {
		return s.stopErr
	}
	s.stopped = true
	if s.stop != nil {
		close(s.stop)
		<-s.bgDone
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.stopErr = s.budgets.flush(ctx)
	s.writer.Close()
	return s.stopErr
}

// Handler returns the service's HTTP handler with the standard middleware.
// /v1/health, /healthz, /readyz and /metrics are unauthenticated.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	authed := func(h http.Handler) http.Handler { return s.cfg.Authenticate(h) }
	mux.Handle("GET /v1/health", hf(s.handleHealth))
	mux.Handle("GET /healthz", hf(s.handleLive))
	mux.Handle("GET /readyz", hf(s.handleReady))
	if s.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	}
	mux.Handle("GET /v1/models", authed(hf(s.handleModels)))
	mux.Handle("POST /v1/models:invoke", authed(hf(s.handleInvoke)))
	mux.Handle("POST /v1/policy:check", authed(hf(s.handlePolicyCheck)))
	mux.Handle("POST /v1/policy/check", authed(hf(s.handlePolicyCheck)))
	mux.Handle("POST /v1/chat/completions", authed(hf(s.handleChatCompletions)))
	mux.Handle("POST /v1/embeddings", authed(hf(s.handleEmbeddings)))
	mux.Handle("GET /v1/usage", authed(hf(s.handleUsage)))
	// The OpenAI-compatible surface under its own base URL (see OpenAIBasePath).
	mux.Handle("GET "+OpenAIBasePath+"/models", authed(hf(s.handleOAModels)))
	mux.Handle("GET "+OpenAIBasePath+"/models/{model...}", authed(hf(s.handleOAModel)))
	mux.Handle("POST "+OpenAIBasePath+"/chat/completions", authed(hf(s.handleChatCompletions)))
	mux.Handle("POST "+OpenAIBasePath+"/embeddings", authed(hf(s.handleEmbeddings)))
	mux.Handle("/", httpx.NotFoundHandler(mux))
	return chain(mux, s.log, s.httpm.Observe)
}
