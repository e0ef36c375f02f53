// Package agentorchestrator is the Agent Orchestrator service: the runs API
// (admission, get, list, cancel, events over SSE), the agents API, the admin
// API (tenants, tokens, agents, tools, audit), and the scheduler and
// executors that run the agent loop.
package agentorchestrator

import (
	"context"
	"errors"
	"fmt"
	"github.com/nexixai/agentos/console"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexixai/agentos/internal/artifact"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/bus/inproc"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/dispatch"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/memory"
	"github.com/nexixai/agentos/internal/metrics"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/queue"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/storecache"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/tools/mcptool"
	"github.com/nexixai/agentos/internal/version"
)

// mcpHTTPTimeout bounds connecting to an HTTP MCP server and waiting for
// its response headers (the guard's per-phase timeout); a tool call's own
// timeout bounds the rest.
const mcpHTTPTimeout = 30 * time.Second

// ServiceName is reported by /v1/health.
const ServiceName = "agent-orchestrator"

// Auditor appends audit records (internal/audit.Auditor).
type Auditor interface {
	Record(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error)
}

// Limiter is the per-tenant rate limiter (internal/tenancy.Limiter).
type Limiter interface {
	Allow(tenantID, name string, ratePerSec float64, burst int) (bool, time.Duration)
	AllowPerMinute(tenantID, name string, perMinute int) (bool, time.Duration)
}

// Config wires the orchestrator's dependencies. Store, Queue,
// Authenticate, Audit, Limiter, Model and Tools are required; the other
// fields have defaults or may be left out.
type Config struct {
	Store store.Store
	Queue queue.Queue
	// Bus carries committed events to SSE streams and cancel and wake
	// signals between replicas (internal/bus); default the in-process bus
	// with the store as its history. The caller closes a bus it passes,
	// after Stop.
	Bus bus.Bus
	// StorePoll is how often an open SSE stream re-reads the store, the
	// fallback for events the bus did not bring (default 2s: with the
	// in-process bus, events committed by another process arrive only so;
	// with NATS every replica's events come over the bus and the node
	// sets a longer interval).
	StorePoll time.Duration
	// Streams bounds concurrent SSE streams (node-wide cap; per tenant
	// its max_concurrent_streams, else Node.QuotaMaxStreams); default a
	// gate without a node-wide cap.
	Streams *events.Gate
	// Authenticate puts an auth.Context in every API request's context.
	Authenticate func(http.Handler) http.Handler
	Audit        Auditor
	Limiter      Limiter
	Model        modelport.Port
	Tools        *tools.Registry
	// Memory serves /v1/memory; default a memory.Service over Store with
	// Model's embeddings and the tenant's max_memory_bytes.
	Memory *memory.Service
	// Artifacts serves /v1/runs/{run_id}/artifacts and /v1/artifacts and
	// sweeps expired artifacts (every Node.ArtifactSweep); nil: the node
	// keeps no artifacts (lists are empty, every id is not_found).
	Artifacts *artifact.Service
	// WebhookClient calls the webhook tools tenants register; default
	// builtin.GuardedClient with Node.HTTPFetchAllow as its allowlist, so
	// the SSRF guard of tool.http.fetch applies to webhooks too.
	WebhookClient *http.Client
	// MCP holds the sessions with tenants' MCP servers; default a manager
	// whose HTTP client is the SSRF guard with Node.MCPHTTPAllow as its
	// allowlist. Stop ends its sessions (stdio servers are stopped).
	MCP *mcptool.Manager
	// DeliveryClient sends run webhook deliveries; default the same SSRF
	// guard with Node.WebhookAllow as its allowlist, no redirects.
	DeliveryClient *http.Client
	// Registry receives the service's metrics; default a new registry.
	Registry *prometheus.Registry
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Node is the node's effective configuration (quota defaults, TTLs, mode).
	Node config.Config
	// Executors is how many runs this process executes at once (default 128).
	Executors int
	// LeaseTTL is how long a run lease lasts without renewal (default 6s,
	// config.Config.RunLeaseTTL's; renewed every third of it).
	LeaseTTL time.Duration
	// PollInterval is how often the scheduler looks for work when not
	// woken by an admission (default 250ms).
	PollInterval time.Duration
	// Heartbeat is the SSE comment heartbeat interval (default 15s).
	Heartbeat time.Duration
	// ReadyChecks are extra dependencies /readyz checks, by name.
	ReadyChecks map[string]func(ctx context.Context) error
	// ModelProbe checks that model-policy answers (its health endpoint);
	// the scheduler calls it to close the model-policy circuit breaker
	// once open. Nil: a half-open breaker closes without a probe and the
	// next runs' model calls decide (failures open it again).
	ModelProbe func(ctx context.Context) error
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Workers runs placed tool calls on worker nodes (internal/dispatch,
	// over the NATS bus); nil: this node has no workers, and a placed
	// call fails with dependency_unavailable.
	Workers Workers
}

// Workers is what the orchestrator needs of worker nodes.
type Workers interface {
	// Run sends a placed call to a matching worker and waits for it; it
	// returns an error only when ctx ended.
	Run(ctx context.Context, c dispatch.Call) (dispatch.Outcome, error)
	// Live lists the workers heard from recently.
	Live() []dispatch.Worker
}

// Server is the orchestrator.
type Server struct {
	cfg     Config
	log     *slog.Logger
	bus     bus.Bus
	metrics *orchMetrics
	http    *metrics.HTTP
	handler http.Handler
	mcp     *mcptool.Manager
	memory  *memory.Service
	// artifacts is Config.Artifacts (nil: none).
	artifacts *artifact.Service

	// Webhook deliveries and schedules (webhooks.go, schedules.go).
	hookMetrics    *hookMetrics
	deliveryClient *http.Client

	owner string // this process's lease owner id
	// cache is the store's cache of tenants, agents and tokens when the
	// store has one: its writes are signalled to every replica, whose
	// signal loops drop the entry (bus.SignalInvalidate).
	cache *storecache.Store
	// breaker is open while model-policy is known down: no runs are
	// leased, /readyz answers 503 naming model-policy.
	breaker *breaker
	wake    chan struct{}
	pub     *publisher // the bus writer, off the commit path

	// tenantPatchMu serializes this process's tenant PATCHes (rare), so
	// their optimistic updates only race other processes'.
	tenantPatchMu sync.Mutex

	// The scheduler goroutine's copy of tenants' max_concurrent_runs.
	limits   map[string]int
	limitsAt time.Time

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // run_id → cancel of its executor
	wg      sync.WaitGroup                     // executors

	// leased, when set (tests, before Start), is called by the scheduler
	// with what each lease call returned, before their executors start: a
	// test waits for a lease decision instead of sleeping.
	leased func([]queue.Lease)
	// cancelCheck is how often an executor looks in the store for a
	// cancel (cancelCheckInterval; tests lengthen it to prove the bus).
	cancelCheck time.Duration

	// lifeMu orders Start and Stop; stop is set while started.
	lifeMu sync.Mutex
	stop   context.CancelFunc
	loops  sync.WaitGroup // the scheduler and the idempotency purge
}

// New builds the server; it starts nothing. Start runs the scheduler (Stop
// ends it) and Handler serves the API.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Queue == nil || cfg.Authenticate == nil || cfg.Model == nil ||
		cfg.Tools == nil || cfg.Limiter == nil || cfg.Audit == nil {
		return nil, errors.New("agentorchestrator: Store, Queue, Authenticate, Model, Tools, Limiter and Audit are required")
	}
	if cfg.Bus == nil {
		cfg.Bus = inproc.New(inproc.Config{History: cfg.Store})
	}
	if cfg.StorePoll <= 0 {
		cfg.StorePoll = defaultStorePoll
	}
	if cfg.Streams == nil {
		cfg.Streams = events.NewGate(0)
	}
	if cfg.Registry == nil {
		cfg.Registry = metrics.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Executors <= 0 {
		cfg.Executors = 128
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 6 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WebhookClient == nil {
		c, err := defaultWebhookClient(cfg.Node)
		if err != nil {
			return nil, err
		}
		cfg.WebhookClient = c
	}
	if cfg.MCP == nil {
		allow, err := builtin.ParseAllow(cfg.Node.MCPHTTPAllow)
		if err != nil {
			return nil, fmt.Errorf("AGENTOS_MCP_HTTP_ALLOW: %w", err)
		}
		m, err := mcptool.New(mcptool.Config{Logger: cfg.Logger, Now: cfg.Now,
			HTTPClient: builtin.GuardedClient(builtin.HTTPFetchConfig{Allow: allow, Timeout: mcpHTTPTimeout})})
		if err != nil {
			return nil, err
		}
		cfg.MCP = m
	}
	if cfg.Memory == nil {
		cfg.Memory = NewMemory(cfg.Store, cfg.Model)
	}
	if cfg.DeliveryClient == nil {
		c, err := defaultDeliveryClient(cfg.Node.WebhookAllow)
		if err != nil {
			return nil, err
		}
		cfg.DeliveryClient = c
	}
	s := &Server{
		mcp:       cfg.MCP,
		cfg:       cfg,
		memory:    cfg.Memory,
		artifacts: cfg.Artifacts,
		log:       cfg.Logger.With("service", ServiceName),
		bus:       cfg.Bus,
		metrics:   newOrchMetrics(cfg.Registry),
		http:      metrics.NewHTTP(cfg.Registry, ServiceName),
		owner:     newOwnerID(),
		wake:      make(chan struct{}, 1),
		running:   map[string]context.CancelCauseFunc{},

		cancelCheck: cancelCheckInterval,

		hookMetrics:    newHookMetrics(cfg.Registry),
		deliveryClient: cfg.DeliveryClient,
	}
	s.pub = &publisher{s: s}
	s.breaker = newBreaker(cfg.Now, func(open bool, reason string) {
		if open {
			s.metrics.circuitOpen.Set(1)
			s.log.Warn("model-policy circuit open: no runs are started until it answers", "reason", reason)
		} else {
			s.metrics.circuitOpen.Set(0)
			s.log.Info("model-policy circuit closed: starting runs again", "reason", reason)
			s.Wake()
		}
	})
	if c, ok := cfg.Store.(*storecache.Store); ok {
		s.cache = c
		c.Notify(func(ctx context.Context, inv storecache.Invalidation) {
			s.signal(ctx, bus.Signal{Kind: bus.SignalInvalidate, TenantID: inv.TenantID, Entity: inv.Entity, ID: inv.ID, Reason: s.owner})
		})
	}
	s.handler = s.routes()
	return s, nil
}

// NewMemory is searchable memory over st with model's embeddings
// (memory.DefaultEmbedModel) under each tenant's max_memory_bytes.
func NewMemory(st store.Store, model modelport.Port) *memory.Service {
	return &memory.Service{Store: st, Model: model, Quota: func(ctx context.Context, tenantID string) (int64, error) {
		t, err := st.GetTenant(ctx, tenantID)
		return t.Quotas.Storage.MaxMemoryBytes, err
	}}
}

// Handler returns the HTTP handler with the standard middleware.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	public := http.NewServeMux()
	api := http.NewServeMux()
	authed := s.cfg.Authenticate(httpx.Routed(api))

	public.Handle("GET /v1/health", httpx.H(s.handleHealth))
	public.Handle("GET /healthz", httpx.H(s.handleHealthz))
	public.Handle("GET /readyz", httpx.H(s.handleReadyz))
	public.Handle("GET /metrics", metrics.Handler(s.cfg.Registry))
	console.Register(public, console.Config{Mode: s.cfg.Node.Mode, DefaultTenant: s.cfg.Node.DefaultTenant, TraceURL: s.cfg.Node.ConsoleTraceURL})
	public.Handle("/", httpx.MethodCheck(authed, public, api))

	api.Handle("GET /v1/agents", httpx.H(s.handleListAgents))
	api.Handle("GET /v1/agents/{agent_id}", httpx.H(s.handleGetAgent))
	api.Handle("POST /v1/agents/{agent_id}/runs", httpx.H(s.handleCreateRun))
	api.Handle("GET /v1/runs", httpx.H(s.handleListRuns))
	api.Handle("GET /v1/runs/{run_id}", httpx.H(s.handleGetRun))
	// ServeMux wildcards are whole segments, so "{run_id}:cancel" is parsed
	// by the handler.
	api.Handle("POST /v1/runs/{run_action}", httpx.H(s.handleRunAction))
	api.Handle("GET /v1/runs/{run_id}/events", httpx.H(s.handleEvents))
	// Stateless MCP (see mcp_server.go): no session, so no GET stream or
	// DELETE; those get the usual 405.
	api.Handle("POST /mcp", s.mcpHandler())
	api.Handle("POST /v1/threads", httpx.H(s.handleCreateThread))
	api.Handle("GET /v1/threads", httpx.H(s.handleListThreads))
	api.Handle("GET /v1/threads/{thread_id}", httpx.H(s.handleGetThread))
	api.Handle("DELETE /v1/threads/{thread_id}", httpx.H(s.handleDeleteThread))
	api.Handle("GET /v1/threads/{thread_id}/messages", httpx.H(s.handleListThreadMessages))
	api.Handle("POST /v1/threads/{thread_id}/runs", httpx.H(s.handleCreateRun))
	s.registerAdminRoutes(api)
	s.registerWorkerRoutes(api)
	s.registerMemoryRoutes(api)
	s.registerArtifactRoutes(api)
	s.registerA2ARoutes(api)
	s.registerHookRoutes(api)
	s.registerAnalyticsRoutes(api)
	api.Handle("/", httpx.NotFoundHandler(public, api))

	return httpx.Chain(httpx.Routed(public), httpx.Standard(s.log, s.http.Observe)...)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ok", "service": ServiceName, "version": version.Version})
	return nil
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ok"})
	return nil
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{}
	var failing []string
	if err := s.cfg.Store.Ping(ctx); err != nil {
		checks["store"] = err.Error()
		failing = append(failing, "store")
	} else {
		checks["store"] = "ok"
	}
	if reason := s.breaker.openReason(); reason != "" {
		checks["model-policy"] = reason
		failing = append(failing, "model-policy")
	}
	for name, check := range s.cfg.ReadyChecks {
		if _, done := checks[name]; done {
			continue
		}
		if err := check(ctx); err != nil {
			checks[name] = err.Error()
			failing = append(failing, name)
		} else {
			checks[name] = "ok"
		}
	}
	if len(failing) > 0 {
		return errDependency(failing, checks)
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
	return nil
}

func errDependency(failing []string, checks map[string]string) error {
	return errs.E(errs.DependencyUnavailable, "not ready: %s unavailable", strings.Join(failing, ", ")).
		WithDetails(map[string]any{"failing": failing, "checks": checks})
}

// requireTenant is auth.Require for tenant-scoped endpoints: a platform
// admin whose credential names no tenant must select one with X-Tenant-Id.
func requireTenant(ctx context.Context, scope string) (auth.Context, error) {
	ac, err := auth.Require(ctx, scope)
	if err == nil && ac.TenantID == "" {
		return ac, errs.Field("X-Tenant-Id", "this endpoint is tenant-scoped: name the tenant with the X-Tenant-Id header")
	}
	return ac, err
}
