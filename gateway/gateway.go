// Package gateway is the UI/API gateway of the control plane (the seed's
// "Box 1"): one entry address in front of orchestrator, model-policy and
// federation replicas. It routes each request by path to its service's
// pool, and, for tenants listed in a dedicated pool (the seed's optional
// "Model B"), to that pool's replicas instead of the shared ones. It keeps
// only healthy replicas in the rotation (active /readyz probes, plus a
// refused connection seen while proxying), picks the least busy one, and
// answers dependency_unavailable when a pool has none. Responses are
// passed through unbuffered, so SSE streams flow event by event and are
// never cut by a gateway timeout; a stream whose replica dies ends, and
// the client's reconnect with Last-Event-ID reaches another replica.
//
// The gateway holds no state of its own: any number of gateways may run
// side by side.
package gateway

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/metrics"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/version"
)

// ServiceName is the gateway's name in logs and health bodies.
const ServiceName = "gateway"

// TenantFunc returns the tenant a request will act in, established the way
// its upstream will authenticate it, or "" when that is unknown (no or bad
// credentials: the upstream will refuse the request, and the shared pool
// may as well). It must never trust what the upstream would not, or a
// caller could reach a dedicated pool by naming its tenant.
type TenantFunc func(r *http.Request) string

// Config configures a Gateway.
type Config struct {
	// Upstreams lists the replicas (validated by New). Required.
	Upstreams Upstreams
	// Tenant resolves the tenant of a request for dedicated routing.
	// Required when Upstreams.Dedicated is not empty; unused otherwise.
	Tenant TenantFunc
	// HealthInterval is the time between two readiness probes of each
	// upstream; default 2s.
	HealthInterval time.Duration
	// HealthTimeout bounds one probe; default 3s.
	HealthTimeout time.Duration
	// Timeouts bound connecting to an upstream and the wait for its
	// response headers (not its body: streams are unbounded); a zero
	// ResponseHeader is 5m, longer than any non-streamed model call the
	// upstreams allow (the node passes outbound.ForModels).
	Timeouts outbound.Timeouts
	// RootCAs verifies https upstreams (nil: the system roots). The node
	// adds its federation CA, whose certificate federation serves in prod.
	RootCAs *x509.CertPool
	// Transport carries proxied requests and probes; default
	// outbound.Transport with Timeouts and RootCAs.
	Transport http.RoundTripper
	// Logger is the access and health log; default slog.Default().
	Logger *slog.Logger
	// Console, if set, serves the web console at /console and /console/
	// (console.Handler); the gateway answers those paths itself.
	Console http.Handler
	// Registry, if set, gets the gateway's metrics and is served at
	// /metrics.
	Registry *prometheus.Registry
}

// Gateway is the reverse proxy. Start begins the health checks; Handler
// serves requests; Stop ends the checks.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	shared    map[string]*pool // service → shared pool
	dedicated map[string]map[string]*pool
	all       []*pool
	checker   *checker
	metrics   *gatewayMetrics
	proxy     *httputil.ReverseProxy
	handler   http.Handler

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New validates cfg and builds a Gateway. Every upstream starts out of the
// rotation until Start has probed it.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.Upstreams.Validate(); err != nil {
		return nil, fmt.Errorf("gateway upstreams: %w", err)
	}
	if len(cfg.Upstreams.Dedicated) > 0 && cfg.Tenant == nil {
		return nil, errors.New("gateway: dedicated pools need Config.Tenant to know a request's tenant")
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 2 * time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 3 * time.Second
	}
	if cfg.Timeouts.ResponseHeader <= 0 {
		cfg.Timeouts.ResponseHeader = outbound.DefaultModelResponseHeaderTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Transport == nil {
		tr := outbound.Transport(cfg.Timeouts, &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12})
		tr.MaxIdleConnsPerHost = 256 // few upstreams, many requests each
		cfg.Transport = tr
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, shared: map[string]*pool{}, dedicated: map[string]map[string]*pool{}}
	u := cfg.Upstreams
	for service, urls := range map[string][]string{Orchestrator: u.Orchestrator, ModelPolicy: u.ModelPolicy, Federation: u.Federation} {
		g.shared[service] = newPool(service, service, urls)
	}
	for _, d := range u.Dedicated {
		for service, urls := range map[string][]string{Orchestrator: d.Orchestrator, ModelPolicy: d.ModelPolicy} {
			if len(urls) == 0 {
				continue // this service stays on the shared pool for these tenants
			}
			p := newPool(d.Name+"/"+service, service, urls)
			for _, t := range d.Tenants {
				if g.dedicated[t] == nil {
					g.dedicated[t] = map[string]*pool{}
				}
				g.dedicated[t][service] = p
			}
			g.all = append(g.all, p)
		}
	}
	for _, service := range []string{Orchestrator, ModelPolicy, Federation} {
		g.all = append(g.all, g.shared[service])
	}
	sort.SliceStable(g.all, func(i, j int) bool { return g.all[i].name < g.all[j].name })
	var ups []*upstream
	for _, p := range g.all {
		ups = append(ups, p.ups...)
	}
	var reg prometheus.Registerer
	if cfg.Registry != nil {
		reg = cfg.Registry
	}
	g.metrics = newGatewayMetrics(reg)
	for _, u := range ups {
		g.metrics.healthy.WithLabelValues(u.pool, u.base.String()).Set(0)
	}
	g.checker = &checker{client: &http.Client{Transport: cfg.Transport}, interval: cfg.HealthInterval,
		timeout: cfg.HealthTimeout, log: g.log, ups: ups,
		onChange: func(u *upstream, healthy bool) {
			v := 0.0
			if healthy {
				v = 1
			}
			g.metrics.healthy.WithLabelValues(u.pool, u.base.String()).Set(v)
		}}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      &poolTransport{base: cfg.Transport, checker: g.checker},
		FlushInterval:  -1, // flush every write: SSE and streamed completions are never held back
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
		ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", httpx.H(g.handleHealthz))
	mux.Handle("GET /readyz", httpx.H(g.handleReadyz))
	if cfg.Registry != nil {
		mux.Handle("GET /metrics", metrics.Handler(cfg.Registry))
	}
	if cfg.Console != nil {
		mux.Handle("GET /console", cfg.Console)
		mux.Handle("GET /console/", cfg.Console)
	}
	mux.Handle("/", httpx.H(g.handleProxy))
	g.handler = httpx.Chain(httpx.Routed(mux), httpx.Standard(g.log, nil)...)
	return g, nil
}

// Handler returns the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Start probes every upstream once, so that the healthy ones are in the
// rotation when it returns, then keeps probing every HealthInterval until
// Stop or ctx ends. A second Start is a no-op.
func (g *Gateway) Start(ctx context.Context) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done != nil {
		return
	}
	ctx, g.cancel = context.WithCancel(ctx)
	g.done = make(chan struct{})
	g.checker.checkAll(ctx)
	go func() {
		defer close(g.done)
		g.checker.run(ctx)
	}()
}

// Stop ends the health checks and waits for them. It is idempotent.
func (g *Gateway) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done == nil {
		return
	}
	g.cancel()
	<-g.done
}

// ServiceFor returns the service that serves path (the three OpenAPI
// files in docs/api): federation's client API, model-policy's native and
// OpenAI-compatible APIs, and the orchestrator for everything else (its
// API, the admin API, /v1/health and unknown paths, which it answers with
// the contract's 404).
func ServiceFor(path string) string {
	switch {
	case under(path, "/v1/federation"), under(path, "/v1/peer"):
		return Federation
	case under(path, "/openai"), under(path, "/v1/models"), under(path, "/v1/policy"),
		under(path, "/v1/chat/completions"), under(path, "/v1/embeddings"), under(path, "/v1/usage"):
		return ModelPolicy
	}
	return Orchestrator
}

// under reports whether path is prefix or below it ("/v1/models:invoke"
// is under "/v1/models"; "/v1/modelsx" is not).
func under(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	rest := path[len(prefix):]
	return rest == "" || rest[0] == '/' || rest[0] == ':'
}

type ctxKey int

const keyRoute ctxKey = iota

// route is what the handler decided for a request, read by the transport.
type route struct {
	pool *pool
	body []byte // the buffered request body, replayed on a retry
}

// poolFor returns the pool serving service for the request's tenant.
func (g *Gateway) poolFor(r *http.Request, service string) *pool {
	if len(g.dedicated) > 0 && service != Federation {
		if tenant := g.cfg.Tenant(r); tenant != "" {
			if p := g.dedicated[tenant][service]; p != nil {
				return p
			}
		}
	}
	return g.shared[service]
}

func (g *Gateway) handleProxy(w http.ResponseWriter, r *http.Request) error {
	p := g.poolFor(r, ServiceFor(r.URL.Path))
	rt := &route{pool: p}
	if r.Body != nil && r.Body != http.NoBody {
		// Buffered (at most httpx.MaxBodyBytes, the services' own limit)
		// so that a request refused at connect time can be replayed on
		// another replica whatever its method.
		body, err := httpx.ReadBody(r)
		if err != nil {
			return err
		}
		rt.body = body
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	rec := &httpx.StatusRecorder{ResponseWriter: w}
	defer func() {
		v := recover()
		code := strconv.Itoa(cmp.Or(rec.Status, http.StatusOK))
		// The proxy aborts the client's connection (http.ErrAbortHandler)
		// when a response cannot be copied to its end: the client left (a
		// stream's usual end: counted by its status), or the upstream
		// failed mid-response, typically a replica dying under a stream.
		// The access log never sees such a request, so the second is
		// logged here; the abort proceeds.
		if v == http.ErrAbortHandler && r.Context().Err() == nil {
			code = "aborted"
			g.log.WarnContext(r.Context(), "upstream failed mid-response; client connection aborted",
				"path", r.URL.Path, "pool", p.name, "request_id", httpx.RequestID(r.Context()),
				"correlation_id", httpx.CorrelationID(r.Context()))
		}
		g.metrics.requests.WithLabelValues(p.name, code).Inc()
		if v != nil {
			panic(v)
		}
	}()
	g.proxy.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), keyRoute, rt)))
	return nil
}

// rewrite prepares the outgoing request. The replica is chosen by the
// transport (a retry may choose another); the request ids and trace
// context go with it so the upstream's logs join the gateway's.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	ctx := pr.In.Context()
	pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", "upstream.invalid", ""
	pr.SetXForwarded()
	pr.Out.Header.Set("X-Request-Id", httpx.RequestID(ctx))
	pr.Out.Header.Set("X-Correlation-Id", httpx.CorrelationID(ctx))
	pr.Out.Header.Set("traceparent", httpx.TraceFrom(ctx).Traceparent())
}

// idHeaders are set by the gateway's own middleware (httpx.IDs) on every
// response; the upstream's copies (the same ids it was sent, and a span
// of the same trace) are dropped so that none appears twice.
var idHeaders = []string{"X-Request-Id", "X-Correlation-Id", "traceparent"}

func (g *Gateway) modifyResponse(resp *http.Response) error {
	for _, h := range idHeaders {
		resp.Header.Del(h)
	}
	return nil
}

// proxyError answers a request no upstream answered.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away: nobody to answer
	}
	var e *errs.Error
	switch {
	case errors.As(err, &e):
	case isTimeout(err):
		e = errs.Wrap(errs.Timeout, err, "the %s upstream did not answer in time", serviceOf(r))
	default:
		e = errs.Wrap(errs.DependencyUnavailable, err, "the %s upstream failed before answering", serviceOf(r))
	}
	g.log.WarnContext(r.Context(), "proxy error", "path", r.URL.Path, "err", err,
		"correlation_id", httpx.CorrelationID(r.Context()))
	httpx.WriteError(w, r, e)
}

func serviceOf(r *http.Request) string {
	if rt, ok := r.Context().Value(keyRoute).(*route); ok {
		return rt.pool.service
	}
	return ServiceFor(r.URL.Path)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (g *Gateway) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ok", "service": ServiceName, "version": version.Version})
	return nil
}

// handleReadyz is ready when every pool that lists upstreams has a healthy
// one. It reports counts per pool, never upstream addresses.
func (g *Gateway) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	pools := map[string]any{}
	var failing []string
	for _, p := range g.all {
		if len(p.ups) == 0 {
			continue
		}
		h := p.healthyCount()
		pools[p.name] = map[string]any{"healthy": h, "total": len(p.ups)}
		if h == 0 {
			failing = append(failing, p.name)
		}
	}
	if len(failing) > 0 {
		return errs.E(errs.DependencyUnavailable, "not ready: no healthy upstream in %s", strings.Join(failing, ", ")).
			WithDetails(map[string]any{"failing": failing, "pools": pools})
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ready", "pools": pools})
	return nil
}

// poolTransport sends a request to a replica of its route's pool. A
// replica that refuses the connection leaves the rotation at once (the
// next probe that succeeds brings it back) and the request, which it never
// received, goes to the next one.
type poolTransport struct {
	base    http.RoundTripper
	checker *checker
}

func (t *poolTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt, ok := req.Context().Value(keyRoute).(*route)
	if !ok {
		return nil, errors.New("gateway: request without a route")
	}
	p := rt.pool
	var tried []*upstream
	for {
		u := p.pick(tried)
		if u == nil {
			return nil, noUpstream(p, len(tried) > 0)
		}
		tried = append(tried, u)
		out := req.Clone(req.Context())
		out.URL.Scheme, out.URL.Host, out.Host = u.base.Scheme, u.base.Host, ""
		if len(rt.body) > 0 {
			// GetBody also lets the transport resend on a fresh connection
			// when a kept-alive one turns out closed before anything was
			// written on it.
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(rt.body)), nil }
			out.Body, _ = out.GetBody()
		}
		u.outstanding.Add(1)
		resp, err := t.base.RoundTrip(out)
		if err != nil {
			u.outstanding.Add(-1)
			if notSent(err) && req.Context().Err() == nil {
				t.checker.record(u, false, "connection failed while proxying: "+err.Error())
				continue
			}
			return nil, err
		}
		resp.Body = &countedBody{ReadCloser: resp.Body, u: u}
		return resp, nil
	}
}

// notSent reports whether err happened before any byte of the request
// reached the upstream (the connection could not be made), so that sending
// it to another replica cannot run it twice.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func noUpstream(p *pool, tried bool) error {
	msg := fmt.Sprintf("no healthy %s upstream", p.service)
	switch {
	case len(p.ups) == 0:
		msg = fmt.Sprintf("no %s upstream is configured", p.service)
	case tried:
		msg = fmt.Sprintf("no %s upstream accepted the connection", p.service)
	}
	return errs.E(errs.DependencyUnavailable, "%s", msg).
		WithDetails(map[string]any{"dependency": p.service, "pool": p.name})
}

// countedBody ends an upstream's outstanding request when the proxy closes
// the response body (after the last byte, or when the client left).
type countedBody struct {
	io.ReadCloser
	u    *upstream
	once sync.Once
}

func (b *countedBody) Close() error {
	b.once.Do(func() { b.u.outstanding.Add(-1) })
	return b.ReadCloser.Close()
}
