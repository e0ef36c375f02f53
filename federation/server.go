// Package federation is the federation service (CONTRACT §6): it tells
// peers who this node is and what it can do, forwards runs to peers over
// mutual TLS with a signed identity token, proxies a forwarded run's event
// stream back, and ingests events replicated from peers.
//
// A Server has two handlers. ClientHandler is the client API (what
// integrators and the local orchestrator call, authenticated like every
// other API). PeerHandler is the peer API, served only over mTLS: every
// request must present a certificate from the federation CA, and every
// tenant-scoped call an identity token signed by the calling peer. The
// receiving node never trusts the caller's tenant blindly: it re-derives
// the tenant from the verified token, requires it to exist and be active
// locally, applies its own entitlements and quotas, and acts through its own
// orchestrator. Events never cross tenants.
//
// Subpackages: identity (the identity token), pki (CA and node
// certificates), peers (the peers file).
package federation

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/version"
)

// Store is what the service persists (store.Store satisfies it).
type Store interface {
	store.FederationStore
	GetTenant(ctx context.Context, tenantID string) (store.Tenant, error)
	Ping(ctx context.Context) error
}

// Auditor appends audit records (internal/audit.Auditor satisfies it).
type Auditor interface {
	Record(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error)
}

// Config configures a Server. Fields without a default are required.
type Config struct {
	// StackID, Region and Environment identify this node.
	StackID     string
	Region      string
	Environment string
	// OrchestratorURL and ModelPolicyURL are advertised in the peer info.
	OrchestratorURL string
	ModelPolicyURL  string
	// Signer signs identity tokens sent to peers.
	Signer *identity.Signer
	// Directory knows the peers.
	Directory *Directory
	// Store keeps forwards, token ids and ingested events, and has tenants.
	Store Store
	// Audit records every forward, proxy and ingest.
	Audit Auditor
	// Orchestrator creates runs and streams events on this node.
	Orchestrator *Orchestrator
	// Authenticate authenticates client API requests (auth.Authenticator.Middleware).
	Authenticate func(http.Handler) http.Handler
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registry receives the service's metrics; default a new registry.
	Registry *prometheus.Registry
	// MaxEventStreams bounds the concurrent event streams of this process
	// (client and peer APIs together; 503 overloaded beyond it); default
	// 256. It is advertised in the capabilities.
	MaxEventStreams int
	// TenantStreams is the per-tenant stream cap for tenants whose
	// quotas.runs.max_concurrent_streams is 0 (AGENTOS_QUOTA_MAX_STREAMS);
	// default 100.
	TenantStreams int
	// MaxConcurrentRuns is advertised in the capabilities; default 25.
	MaxConcurrentRuns int
	// Models is advertised in the capabilities; default tiers
	// fast/balanced/premium on the builtin backend.
	Models ModelsInfo
	// ToolHosting is advertised as supports.tool_hosting.
	ToolHosting bool
	// Heartbeat is the interval of SSE comment heartbeats; default 15 s.
	Heartbeat time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Server is the federation service.
type Server struct {
	cfg     Config
	log     *slog.Logger
	streams *events.Gate
	verify  *identity.Verifier
	m       *metricsSet
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.StackID == "":
		return nil, errors.New("federation: Config.StackID is required")
	case cfg.Signer == nil, cfg.Directory == nil, cfg.Store == nil, cfg.Audit == nil,
		cfg.Orchestrator == nil, cfg.Authenticate == nil:
		return nil, errors.New("federation: Signer, Directory, Store, Audit, Orchestrator and Authenticate are required")
	case cfg.Signer.StackID() != cfg.StackID:
		return nil, errors.New("federation: the signer's stack_id differs from Config.StackID")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.MaxEventStreams <= 0 {
		cfg.MaxEventStreams = 256
	}
	if cfg.TenantStreams <= 0 {
		cfg.TenantStreams = 100
	}
	if cfg.MaxConcurrentRuns <= 0 {
		cfg.MaxConcurrentRuns = 25
	}
	if len(cfg.Models.Tiers) == 0 {
		cfg.Models = ModelsInfo{Tiers: []string{"fast", "balanced", "premium"}, Backends: []string{"builtin"}, MaxContextTokens: 32768}
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger, streams: events.NewGate(cfg.MaxEventStreams)}
	s.verify = &identity.Verifier{Self: cfg.StackID, Keys: cfg.Directory.Key, Replay: cfg.Store, Now: cfg.Now}
	s.m = newMetrics(cfg.Registry)
	return s, nil
}

// Info returns this node's peer info.
func (s *Server) Info() PeerInfo {
	ts := version.Time()
	return PeerInfo{
		StackID: s.cfg.StackID, Environment: s.cfg.Environment, Region: s.cfg.Region,
		APIVersions: []string{APIVersion},
		Endpoints: map[string]string{
			"agent-orchestrator_base_url": s.cfg.OrchestratorURL,
			"model-policy_base_url":       s.cfg.ModelPolicyURL,
		},
		Build: BuildInfo{Version: version.Version, GitSHA: version.SHA(), Timestamp: ts},
	}
}

// Capabilities returns what this node offers to peers.
func (s *Server) Capabilities() Capabilities {
	return Capabilities{
		Supports: map[string]bool{CapRunsForward: true, CapEventsStream: true, CapTenantIsolation: true,
			CapToolHosting: s.cfg.ToolHosting},
		Limits: Limits{MaxConcurrentRuns: s.cfg.MaxConcurrentRuns, MaxEventStreams: s.cfg.MaxEventStreams},
		Models: s.cfg.Models,
	}
}

// common registers the routes both APIs serve: health and discovery.
func (s *Server) common(mux *http.ServeMux, guard func(http.Handler) http.Handler) {
	mux.Handle("GET /v1/federation/health", httpx.H(func(w http.ResponseWriter, r *http.Request) error {
		httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ok", "service": ServiceName, "version": version.Version})
		return nil
	}))
	mux.Handle("GET /healthz", httpx.H(func(w http.ResponseWriter, r *http.Request) error {
		httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ok"})
		return nil
	}))
	mux.Handle("GET /readyz", httpx.H(s.handleReady))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	info := guard(httpx.H(func(w http.ResponseWriter, r *http.Request) error {
		httpx.JSON(w, r, http.StatusOK, map[string]any{"peer": s.Info()})
		return nil
	}))
	caps := guard(httpx.H(func(w http.ResponseWriter, r *http.Request) error {
		httpx.JSON(w, r, http.StatusOK, map[string]any{"capabilities": s.Capabilities()})
		return nil
	}))
	mux.Handle("GET /v1/federation/peer", info)
	mux.Handle("GET /v1/peer/info", info)
	mux.Handle("GET /v1/federation/peer/capabilities", caps)
	mux.Handle("GET /v1/peer/capabilities", caps)
	mux.Handle("/", httpx.NotFoundHandler(mux))
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]any{}
	var failing []string
	check := func(name string, err error) {
		if err != nil {
			checks[name] = err.Error()
			failing = append(failing, name)
			return
		}
		checks[name] = "ok"
	}
	check("store", s.cfg.Store.Ping(ctx))
	check("agent-orchestrator", s.cfg.Orchestrator.Ping(ctx))
	var certErr error
	if n := s.cfg.Directory.tls; n == nil || n.Leaf == nil {
		certErr = errors.New("no node certificate")
	} else if s.cfg.Now().After(n.Leaf.NotAfter) {
		certErr = errors.New("node certificate expired")
	}
	check("peer CA", certErr)
	if len(failing) > 0 {
		return errs.E(errs.DependencyUnavailable, "not ready: %s", strings.Join(failing, ", ")).
			WithDetails(map[string]any{"failing": failing, "checks": checks})
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ready", "service": ServiceName, "checks": checks})
	return nil
}

// observe feeds the request metrics.
func (s *Server) observe(api string) func(r *http.Request, status int, d time.Duration) {
	return func(r *http.Request, status int, d time.Duration) {
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s.m.requests.WithLabelValues(api, route, statusClass(status)).Inc()
		s.m.latency.WithLabelValues(api, route).Observe(d.Seconds())
	}
}

// ClientHandler returns the client API: health, readiness, metrics,
// discovery, forward, the event proxy and ingest. Everything but health,
// readiness and metrics goes through Config.Authenticate.
func (s *Server) ClientHandler() http.Handler {
	mux := http.NewServeMux()
	authn := s.cfg.Authenticate
	s.common(mux, authn)
	mux.Handle("POST /v1/federation/runs:forward", authn(httpx.H(s.handleForward)))
	mux.Handle("GET /v1/federation/runs/{run_id}/events", authn(httpx.H(s.handleEvents)))
	mux.Handle("POST /v1/federation/events:ingest", authn(httpx.H(s.handleIngest)))
	return httpx.Chain(mux, httpx.Standard(s.log.With("api", "client"), s.observe("client"))...)
}

// PeerHandler returns the peer API, to be served over TLS with
// pki.NodeTLS.ServerConfig: requests without a verified client certificate
// are refused (unauthorized); forward, events and ingest also require a
// valid identity token from the certificate's stack.
func (s *Server) PeerHandler() http.Handler {
	mux := http.NewServeMux()
	s.common(mux, func(h http.Handler) http.Handler { return h })
	mux.Handle("POST /v1/federation/runs:forward", s.peerAuth(httpx.H(s.handlePeerForward)))
	mux.Handle("GET /v1/federation/runs/{run_id}/events", s.peerAuth(httpx.H(s.handlePeerEvents)))
	mux.Handle("POST /v1/federation/events:ingest", s.peerAuth(httpx.H(s.handlePeerIngest)))
	mws := append(httpx.Standard(s.log.With("api", "peer"), s.observe("peer")), s.requireClientCert)
	return httpx.Chain(mux, mws...)
}

// requireClientCert refuses requests that did not come over TLS with a
// client certificate verified against the federation CA.
func (s *Server) requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
			s.m.peerRejections.WithLabelValues("no_client_certificate").Inc()
			httpx.WriteError(w, r, errs.E(errs.Unauthorized,
				"the peer API requires a client certificate issued by the federation CA").
				WithDetails(map[string]any{"reason": "no_client_certificate"}))
			return
		}
		next.ServeHTTP(w, r)
	})
}

type claimsKey struct{}

// peerAuth verifies the identity token and binds it to the TLS identity:
// the token's issuer must be the stack named by the client certificate.
func (s *Server) peerAuth(next http.Handler) http.Handler {
	return httpx.H(func(w http.ResponseWriter, r *http.Request) error {
		tok, err := auth.ParseBearer(r.Header.Get("Authorization"))
		if err != nil || tok == "" {
			s.m.peerRejections.WithLabelValues("no_identity_token").Inc()
			return errs.E(errs.Unauthorized, "Authorization: a Bearer identity token signed by the calling peer is required").
				WithDetails(map[string]any{"reason": "no_identity_token"})
		}
		certStack := pki.StackIDOf(r.TLS.PeerCertificates[0])
		c, err := s.verify.VerifyFrom(r.Context(), tok, certStack)
		if err != nil {
			reason, _ := errs.As(err).Details["reason"].(string)
			s.m.peerRejections.WithLabelValues(reasonLabel(reason)).Inc()
			s.audit(r, store.AuditRecord{Action: "federation.peer.reject", Target: r.URL.Path, Outcome: "denied",
				Details: map[string]any{"peer_cert_stack_id": certStack, "reason": reason}})
			return err
		}
		httpx.SetLogTenant(r.Context(), c.TenantID, c.Subject)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, c)))
		return nil
	})
}

func claimsFrom(ctx context.Context) identity.Claims {
	c, _ := ctx.Value(claimsKey{}).(identity.Claims)
	return c
}

// peerRefused audits a peer API request refused after its identity token
// was verified (scope, tenant, source) and returns err.
func (s *Server) peerRefused(r *http.Request, c identity.Claims, action string, err error) error {
	e := errs.As(err)
	s.audit(r, store.AuditRecord{TenantID: c.TenantID, PrincipalID: c.Subject, Action: action, Target: r.URL.Path,
		Outcome: "denied", Details: map[string]any{"direction": "inbound", "peer_stack_id": c.Issuer, "jti": c.JTI,
			"error_code": string(e.Code), "error_message": e.Message}})
	return err
}

// localContext re-derives the Auth Context of a peer's caller on this
// node: the tenant must exist here, be active and be one the peer may act
// for (peers file); the principal keeps its
// id but never gets more than the federated scopes, and never a role
// beyond tenant_service.
func (s *Server) localContext(ctx context.Context, c identity.Claims) (auth.Context, store.Tenant, error) {
	t, err := s.cfg.Store.GetTenant(ctx, c.TenantID)
	if errors.Is(err, errs.ErrNotFound) {
		return auth.Context{}, t, errs.E(errs.Forbidden, "tenant %s is not known on stack %s", c.TenantID, s.cfg.StackID).
			WithDetails(map[string]any{"reason": "tenant_unknown", "tenant_id": c.TenantID})
	}
	if err != nil {
		return auth.Context{}, t, errs.Wrap(errs.DependencyUnavailable, err, "cannot read tenant")
	}
	if t.Status != store.TenantActive {
		return auth.Context{}, t, errs.E(errs.Forbidden, "tenant %s is %s on stack %s", c.TenantID, t.Status, s.cfg.StackID).
			WithDetails(map[string]any{"reason": "tenant_disabled", "tenant_id": c.TenantID})
	}
	if auth.ReservedPrincipal(c.Subject) {
		// A peer names whom it acts for; it may not take the name of one of
		// this platform's principals, which audit records would then show.
		return auth.Context{}, t, errs.E(errs.Forbidden, "sub: %q is reserved for the platform and cannot be sent by a peer stack", c.Subject).
			WithDetails(map[string]any{"field": "sub", "reason": "reserved_principal"})
	}
	if !s.cfg.Directory.AllowsTenant(c.Issuer, c.TenantID) {
		return auth.Context{}, t, errs.E(errs.Forbidden, "peer %s may not act for tenant %s on stack %s (its tenants list in the peers file)",
			c.Issuer, c.TenantID, s.cfg.StackID).
			WithDetails(map[string]any{"reason": "tenant_not_federated", "tenant_id": c.TenantID})
	}
	var scopes []string
	for _, sc := range []string{auth.ScopeRunsCreate, auth.ScopeRunsRead, auth.ScopeEventsRead} {
		if c.HasScope(sc) || c.HasScope(auth.ScopeRunsForward) {
			scopes = append(scopes, sc)
		}
	}
	ptype := c.PrincipalType
	if ptype != "user" && ptype != "service" {
		ptype = "service"
	}
	ac := auth.Context{
		TenantID:      c.TenantID,
		Principal:     auth.Principal{PrincipalID: c.Subject, PrincipalType: ptype, DisplayName: "via " + c.Issuer},
		Scopes:        scopes,
		Roles:         []string{auth.RoleTenantService},
		Session:       map[string]any{"federated_from": c.Issuer, "jti": c.JTI},
		PolicyContext: auth.PolicyContext{Region: s.cfg.Region},
	}
	return ac, t, nil
}

// federatedScopes lists the caller's scopes that matter to a peer.
func federatedScopes(ac auth.Context) []string {
	var out []string
	for _, sc := range []string{auth.ScopeRunsForward, auth.ScopeRunsCreate, auth.ScopeRunsRead,
		auth.ScopeEventsRead, auth.ScopeEventsIngest} {
		if ac.HasScope(sc) {
			out = append(out, sc)
		}
	}
	return out
}

// requireAny returns the caller's Auth Context if it holds one of scopes.
func requireAny(ctx context.Context, scopes ...string) (auth.Context, error) {
	ac, ok := auth.From(ctx)
	if !ok {
		return auth.Context{}, errs.E(errs.Unauthorized, "request is not authenticated")
	}
	if ac.TenantID == "" {
		return auth.Context{}, errs.E(errs.InvalidRequest, "X-Tenant-Id: a platform admin must name the tenant to act in").
			WithDetails(map[string]any{"field": "X-Tenant-Id"})
	}
	if slices.ContainsFunc(scopes, ac.HasScope) {
		return ac, nil
	}
	return auth.Context{}, errs.E(errs.Forbidden, "missing scope %q", scopes[0]).
		WithDetails(map[string]any{"required_scope": strings.Join(scopes, " or ")})
}

// audit appends a record; a failing audit log is logged, the request
// outcome stands (the store write that matters already happened).
func (s *Server) audit(r *http.Request, rec store.AuditRecord) {
	rec.Time = s.cfg.Now().UTC()
	rec.CorrelationID = httpx.CorrelationID(r.Context())
	if rec.Details == nil {
		rec.Details = map[string]any{}
	}
	rec.Details["stack_id"] = s.cfg.StackID
	if _, err := s.cfg.Audit.Record(r.Context(), rec); err != nil {
		s.log.ErrorContext(r.Context(), "audit record failed", "err", err, "action", rec.Action)
	}
}
