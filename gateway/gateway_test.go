package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/metrics"
)

// fakeUpstream is a replica: /readyz answers 200 while ready is set, every
// other path answers {"upstream": name, "path": ..., "body": ...} and
// records the request headers it saw.
type fakeUpstream struct {
	name  string
	srv   *httptest.Server
	ready atomic.Bool
	hits  atomic.Int64

	mu     sync.Mutex
	header http.Header
}

func newFakeUpstream(t *testing.T, name string) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{name: name}
	f.ready.Store(true)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == readyPath {
			if !f.ready.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, `{"status":"ready"}`)
			return
		}
		f.hits.Add(1)
		f.mu.Lock()
		f.header = r.Header.Clone()
		f.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req_upstream_would_not_matter")
		_ = json.NewEncoder(w).Encode(map[string]string{"upstream": f.name, "path": r.URL.Path, "body": string(body)})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeUpstream) lastHeader() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.header
}

type testBundle struct {
	gw  *Gateway
	srv *httptest.Server
}

func setup(t *testing.T, cfg Config) testBundle {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Registry == nil {
		cfg.Registry = metrics.NewRegistry()
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = time.Hour // probes only at Start unless a test asks for more
	}
	g, err := New(cfg)
	require.NoError(t, err)
	g.Start(t.Context())
	t.Cleanup(g.Stop)
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return testBundle{gw: g, srv: srv}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func do(t *testing.T, method, url string, hdr map[string]string, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{status: resp.StatusCode, header: resp.Header}
	require.NoError(t, json.Unmarshal(raw, &a.body), "body: %s", raw)
	return a
}

func errorCode(a answer) string {
	e, _ := a.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func TestServiceFor(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/v1/health":                          Orchestrator,
		"/v1/agents/agt_1/runs":               Orchestrator,
		"/v1/runs/run_1/events":               Orchestrator,
		"/v1/runs/run_1:cancel":               Orchestrator,
		"/v1/admin/tenants":                   Orchestrator,
		"/v1/nope":                            Orchestrator,
		"/v1/modelsx":                         Orchestrator,
		"/v1/models":                          ModelPolicy,
		"/v1/models:invoke":                   ModelPolicy,
		"/v1/policy:check":                    ModelPolicy,
		"/v1/policy/check":                    ModelPolicy,
		"/v1/chat/completions":                ModelPolicy,
		"/v1/embeddings":                      ModelPolicy,
		"/v1/usage":                           ModelPolicy,
		"/openai/v1/models/tier:fast":         ModelPolicy,
		"/openai/v1/chat/completions":         ModelPolicy,
		"/v1/federation/health":               Federation,
		"/v1/federation/runs:forward":         Federation,
		"/v1/federation/runs/run_1/events":    Federation,
		"/v1/peer/info":                       Federation,
		"/v1/federation/peer/capabilities":    Federation,
		"/v1/federation/events:ingest":        Federation,
		"/v1/federationx":                     Orchestrator,
		"/openaiv1/models":                    Orchestrator,
		"/v1/embeddings/../../v1/admin/audit": ModelPolicy, // routing is by the path as sent; the upstream cleans it
	} {
		require.Equal(t, want, ServiceFor(path), path)
	}
}

func TestParseUpstreams(t *testing.T) {
	t.Parallel()
	good := `
orchestrator: [http://127.0.0.1:1, "http://127.0.0.1:2/"]
model-policy: [http://127.0.0.1:3]
dedicated:
  - name: acme
    tenants: [tnt_acme]
    orchestrator: [http://127.0.0.1:4]
`
	u, err := ParseUpstreams([]byte(good))
	require.NoError(t, err)
	require.Len(t, u.Orchestrator, 2)
	require.Equal(t, []string{"tnt_acme"}, u.Dedicated[0].Tenants)

	for name, tc := range map[string]struct{ yaml, want string }{
		"empty":             {``, "orchestrator: at least one upstream URL is required"},
		"misspelt key":      {"orchestrator: [http://a:1]\nmodel_policy: [http://b:1]", "field model_policy not found"},
		"no scheme":         {"orchestrator: [127.0.0.1:1]\nmodel-policy: [http://b:1]", "orchestrator[0]"},
		"path":              {"orchestrator: [http://a:1/v1]\nmodel-policy: [http://b:1]", "scheme://host:port only"},
		"duplicate":         {"orchestrator: [http://a:1, http://a:1]\nmodel-policy: [http://b:1]", "orchestrator[1]: \"http://a:1\" is listed twice"},
		"user info":         {"orchestrator: [http://u:p@a:1]\nmodel-policy: [http://b:1]", "user info"},
		"dedicated no name": {"orchestrator: [http://a:1]\nmodel-policy: [http://b:1]\ndedicated: [{tenants: [tnt_a], orchestrator: [http://c:1]}]", "dedicated[0].name: required"},
		"dedicated no tenant": {"orchestrator: [http://a:1]\nmodel-policy: [http://b:1]\ndedicated: [{name: x, orchestrator: [http://c:1]}]",
			"dedicated[0].tenants: at least one tenant"},
		"dedicated no replica": {"orchestrator: [http://a:1]\nmodel-policy: [http://b:1]\ndedicated: [{name: x, tenants: [tnt_a]}]",
			"dedicated[0]: lists no orchestrator or model-policy upstream"},
		"tenant twice": {"orchestrator: [http://a:1]\nmodel-policy: [http://b:1]\ndedicated: [{name: x, tenants: [tnt_a], orchestrator: [http://c:1]}, {name: y, tenants: [tnt_a], orchestrator: [http://d:1]}]",
			"dedicated[1].tenants[0]: tenant \"tnt_a\" is already listed in dedicated[0].tenants[0]"},
		"bad dedicated url": {"orchestrator: [http://a:1]\nmodel-policy: [http://b:1]\ndedicated: [{name: x, tenants: [tnt_a], model-policy: [ftp://c:1]}]",
			"dedicated[0].model-policy[0]"},
	} {
		_, err := ParseUpstreams([]byte(tc.yaml))
		require.ErrorContains(t, err, tc.want, name)
	}
}

func TestRoutesByPathAndPropagatesIDs(t *testing.T) {
	t.Parallel()
	orch, mp, fed := newFakeUpstream(t, "orch"), newFakeUpstream(t, "mp"), newFakeUpstream(t, "fed")
	b := setup(t, Config{Upstreams: Upstreams{Orchestrator: []string{orch.srv.URL}, ModelPolicy: []string{mp.srv.URL}, Federation: []string{fed.srv.URL}}})

	for path, want := range map[string]string{"/v1/runs": "orch", "/v1/models": "mp", "/openai/v1/models": "mp", "/v1/federation/peer": "fed"} {
		a := do(t, "GET", b.srv.URL+path, nil, "")
		require.Equal(t, 200, a.status, path)
		require.Equal(t, want, a.body["upstream"], path)
		require.Equal(t, path, a.body["path"])
	}

	// A well-formed request id, the correlation id and the trace go to the
	// upstream and come back once each.
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	a := do(t, "POST", b.srv.URL+"/v1/agents/agt_1/runs", map[string]string{"X-Request-Id": "req_from_client",
		"X-Correlation-Id": "corr_client", "traceparent": "00-" + trace + "-00f067aa0ba902b7-01"}, `{"input":"hi"}`)
	require.Equal(t, 200, a.status)
	require.Equal(t, `{"input":"hi"}`, a.body["body"])
	require.Equal(t, []string{"req_from_client"}, a.header.Values("X-Request-Id"))
	require.Equal(t, []string{"corr_client"}, a.header.Values("X-Correlation-Id"))
	require.Len(t, a.header.Values("traceparent"), 1)
	require.Contains(t, a.header.Get("traceparent"), trace)
	seen := orch.lastHeader()
	require.Equal(t, "req_from_client", seen.Get("X-Request-Id"))
	require.Equal(t, "corr_client", seen.Get("X-Correlation-Id"))
	require.Contains(t, seen.Get("traceparent"), "00-"+trace+"-", "the trace continues at the upstream")
	require.NotContains(t, seen.Get("traceparent"), "00f067aa0ba902b7", "as a child of the gateway's span")
	require.NotEmpty(t, seen.Get("X-Forwarded-For"))

	// A malformed request id is replaced by a new one, sent upstream too.
	a = do(t, "GET", b.srv.URL+"/v1/runs", map[string]string{"X-Request-Id": "bad id with spaces"}, "")
	require.True(t, strings.HasPrefix(a.header.Get("X-Request-Id"), "req_"), a.header.Get("X-Request-Id"))
	require.Equal(t, a.header.Get("X-Request-Id"), orch.lastHeader().Get("X-Request-Id"))
}

func TestNoHealthyUpstreamIsDependencyUnavailable(t *testing.T) {
	t.Parallel()
	orch, mp := newFakeUpstream(t, "orch"), newFakeUpstream(t, "mp")
	mp.ready.Store(false)
	b := setup(t, Config{Upstreams: Upstreams{Orchestrator: []string{orch.srv.URL}, ModelPolicy: []string{mp.srv.URL}}})

	a := do(t, "POST", b.srv.URL+"/v1/models:invoke", nil, `{}`)
	require.Equal(t, 503, a.status)
	require.Equal(t, "dependency_unavailable", errorCode(a))
	e := a.body["error"].(map[string]any)
	require.Equal(t, true, e["retryable"])
	require.Equal(t, "no healthy model-policy upstream", e["message"])
	require.Equal(t, "model-policy", e["details"].(map[string]any)["dependency"])
	require.NotEmpty(t, a.body["correlation_id"])
	require.Zero(t, mp.hits.Load(), "an unready replica gets no request")

	// On the OpenAI surface the envelope carries OpenAI's type too.
	a = do(t, "POST", b.srv.URL+"/openai/v1/chat/completions", nil, `{}`)
	require.Equal(t, 503, a.status)
	require.Equal(t, "server_error", a.body["error"].(map[string]any)["type"])

	// No federation upstream is configured at all.
	a = do(t, "GET", b.srv.URL+"/v1/federation/health", nil, "")
	require.Equal(t, 503, a.status)
	require.Equal(t, "no federation upstream is configured", a.body["error"].(map[string]any)["message"])

	a = do(t, "GET", b.srv.URL+"/readyz", nil, "")
	require.Equal(t, 503, a.status)
	require.Equal(t, []any{"model-policy"}, a.body["error"].(map[string]any)["details"].(map[string]any)["failing"])
	require.Equal(t, 200, do(t, "GET", b.srv.URL+"/healthz", nil, "").status)

	text := scrape(t, b.srv.URL)
	require.Contains(t, text, `agentos_gateway_requests_total{code="503",pool="model-policy"} 2`)
	require.Contains(t, text, `agentos_gateway_upstream_healthy{pool="model-policy",upstream="`+mp.srv.URL+`"} 0`)
	require.Contains(t, text, `agentos_gateway_upstream_healthy{pool="orchestrator",upstream="`+orch.srv.URL+`"} 1`)
}

// scrape returns the gateway's /metrics text.
func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	text, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(text)
}

// readyCounts returns healthy/total of a pool from the gateway's /readyz.
func readyCounts(t *testing.T, base, pool string) (healthy, total int) {
	t.Helper()
	a := do(t, "GET", base+"/readyz", nil, "")
	pools, _ := a.body["pools"].(map[string]any)
	if pools == nil {
		pools, _ = a.body["error"].(map[string]any)["details"].(map[string]any)["pools"].(map[string]any)
	}
	p := pools[pool].(map[string]any)
	return int(p["healthy"].(float64)), int(p["total"].(float64))
}

func TestHealthChecksTakeReplicasOutAndBack(t *testing.T) {
	t.Parallel()
	o1, o2, mp := newFakeUpstream(t, "o1"), newFakeUpstream(t, "o2"), newFakeUpstream(t, "mp")
	b := setup(t, Config{HealthInterval: 20 * time.Millisecond,
		Upstreams: Upstreams{Orchestrator: []string{o1.srv.URL, o2.srv.URL}, ModelPolicy: []string{mp.srv.URL}}})

	served := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			a := do(t, "GET", b.srv.URL+"/v1/runs", nil, "")
			require.Equal(t, 200, a.status)
			got[a.body["upstream"].(string)]++
		}
		return got
	}
	got := served(10)
	require.Positive(t, got["o1"])
	require.Positive(t, got["o2"], "both replicas share the load")

	o1.ready.Store(false)
	require.Eventually(t, func() bool { h, _ := readyCounts(t, b.srv.URL, Orchestrator); return h == 1 },
		10*time.Second, 10*time.Millisecond)
	text := scrape(t, b.srv.URL)
	require.Contains(t, text, `agentos_gateway_upstream_healthy{pool="orchestrator",upstream="`+o1.srv.URL+`"} 0`)
	require.Contains(t, text, `agentos_gateway_upstream_healthy{pool="orchestrator",upstream="`+o2.srv.URL+`"} 1`)
	before := o1.hits.Load()
	require.Equal(t, map[string]int{"o2": 10}, served(10))
	require.Equal(t, before, o1.hits.Load())

	o1.ready.Store(true)
	require.Eventually(t, func() bool { h, _ := readyCounts(t, b.srv.URL, Orchestrator); return h == 2 },
		10*time.Second, 10*time.Millisecond)
	require.Positive(t, served(10)["o1"], "a recovered replica is back in the rotation")
}

func TestRefusedConnectionGoesToAnotherReplica(t *testing.T) {
	t.Parallel()
	o1, o2, mp := newFakeUpstream(t, "o1"), newFakeUpstream(t, "o2"), newFakeUpstream(t, "mp")
	b := setup(t, Config{Upstreams: Upstreams{Orchestrator: []string{o1.srv.URL, o2.srv.URL}, ModelPolicy: []string{mp.srv.URL}}})
	o1.srv.Close() // dies between two probes (the next one is an hour away)

	for i := range 6 {
		body := fmt.Sprintf(`{"input":"%d"}`, i)
		a := do(t, "POST", b.srv.URL+"/v1/agents/agt_1/runs", nil, body)
		require.Equal(t, 200, a.status, a.body)
		require.Equal(t, "o2", a.body["upstream"])
		require.Equal(t, body, a.body["body"], "the body is replayed whole on the second replica")
	}
	h, total := readyCounts(t, b.srv.URL, Orchestrator)
	require.Equal(t, 1, h, "the refusing replica left the rotation")
	require.Equal(t, 2, total)

	o2.srv.Close()
	a := do(t, "GET", b.srv.URL+"/v1/runs", nil, "")
	require.Equal(t, 503, a.status)
	require.Equal(t, "dependency_unavailable", errorCode(a))
}

func TestDedicatedTenantRouting(t *testing.T) {
	t.Parallel()
	shared, sharedMP := newFakeUpstream(t, "shared"), newFakeUpstream(t, "shared-mp")
	ded := newFakeUpstream(t, "dedicated")
	var asked atomic.Int64
	b := setup(t, Config{
		Upstreams: Upstreams{Orchestrator: []string{shared.srv.URL}, ModelPolicy: []string{sharedMP.srv.URL},
			Dedicated: []Dedicated{{Name: "acme", Tenants: []string{"tnt_acme"}, Orchestrator: []string{ded.srv.URL}}}},
		// Stands in for the node's authenticator: only a "verified" header counts.
		Tenant: func(r *http.Request) string {
			asked.Add(1)
			if r.Header.Get("X-Test-Verified") == "yes" {
				return r.Header.Get("X-Tenant-Id")
			}
			return ""
		},
	})
	as := func(tenant string, verified bool) map[string]string {
		h := map[string]string{"X-Tenant-Id": tenant}
		if verified {
			h["X-Test-Verified"] = "yes"
		}
		return h
	}
	require.Equal(t, "dedicated", do(t, "GET", b.srv.URL+"/v1/runs", as("tnt_acme", true), "").body["upstream"])
	require.Equal(t, "shared", do(t, "GET", b.srv.URL+"/v1/runs", as("tnt_acme", false), "").body["upstream"],
		"a tenant the upstream would not accept goes to the shared pool")
	require.Equal(t, "shared", do(t, "GET", b.srv.URL+"/v1/runs", as("tnt_other", true), "").body["upstream"])
	require.Equal(t, "shared-mp", do(t, "GET", b.srv.URL+"/v1/models", as("tnt_acme", true), "").body["upstream"],
		"a service the dedicated pool lists no replica for stays shared")
	require.Equal(t, int64(4), asked.Load())

	h, total := readyCounts(t, b.srv.URL, "acme/orchestrator")
	require.Equal(t, 1, h)
	require.Equal(t, 1, total)

	_, err := New(Config{Upstreams: Upstreams{Orchestrator: []string{shared.srv.URL}, ModelPolicy: []string{sharedMP.srv.URL},
		Dedicated: []Dedicated{{Name: "acme", Tenants: []string{"tnt_acme"}, Orchestrator: []string{ded.srv.URL}}}}})
	require.ErrorContains(t, err, "Config.Tenant")
}

// sseUpstream serves /v1/runs/run_1/events as events 1..total, resuming
// after Last-Event-ID, and answers /readyz 200 while ready is set. With
// holdAfter > 0 it stops after that event and holds the stream open until
// the client or the test ends it.
func sseUpstream(t *testing.T, total, holdAfter int, ready *atomic.Bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == readyPath {
			if !ready.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		after, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for seq := after + 1; seq <= total; seq++ {
			if holdAfter > 0 && seq > holdAfter {
				<-r.Context().Done()
				return
			}
			_ = events.WriteFrame(w, events.Frame{ID: strconv.Itoa(seq), Event: "step", Data: fmt.Sprintf(`{"sequence":%d}`, seq)})
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStreamSurvivesReplicaDeathByReconnect(t *testing.T) {
	t.Parallel()
	const total = 6
	var firstReady, secondReady atomic.Bool
	firstReady.Store(true)
	first := sseUpstream(t, total, 2, &firstReady) // sends 1..2, then dies
	second := sseUpstream(t, total, 0, &secondReady)
	mp := newFakeUpstream(t, "mp")
	// The second replica is not ready yet when the client connects, so the
	// stream starts on the first.
	b := setup(t, Config{Upstreams: Upstreams{Orchestrator: []string{first.URL, second.URL}, ModelPolicy: []string{mp.srv.URL}}})

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	open := func(lastID string) *events.Reader {
		req, err := http.NewRequestWithContext(ctx, "GET", b.srv.URL+"/v1/runs/run_1/events", nil)
		require.NoError(t, err)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		return events.NewReader(resp.Body)
	}
	var ids []string
	rd := open("")
	// Events arrive while the upstream still holds the stream open: the
	// gateway flushes each one instead of buffering the response.
	for range 2 {
		f, err := rd.Next()
		require.NoError(t, err)
		ids = append(ids, f.ID)
	}
	secondReady.Store(true)
	b.gw.checker.checkAll(ctx)     // the next probe round finds it ready
	first.CloseClientConnections() // the first replica dies mid-stream
	first.Close()
	_, err := rd.Next()
	require.Error(t, err, "the client sees its stream end")

	rd = open(ids[len(ids)-1]) // EventSource reconnects with Last-Event-ID
	for {
		f, err := rd.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		ids = append(ids, f.ID)
	}
	require.Equal(t, []string{"1", "2", "3", "4", "5", "6"}, ids, "every event once, in order, across two replicas")
	text := scrape(t, b.srv.URL)
	require.Contains(t, text, `agentos_gateway_requests_total{code="aborted",pool="orchestrator"} 1`, "the cut stream")
	require.Contains(t, text, `agentos_gateway_requests_total{code="200",pool="orchestrator"} 1`, "the resumed stream")
}

func TestLeastOutstandingPick(t *testing.T) {
	t.Parallel()
	p := newPool("orchestrator", Orchestrator, []string{"http://a:1", "http://b:1", "http://c:1"})
	for _, u := range p.ups {
		u.healthy.Store(true)
	}
	p.ups[0].outstanding.Store(5) // a holds five streams
	p.ups[2].healthy.Store(false)
	for range 10 {
		require.Same(t, p.ups[1], p.pick(nil))
	}
	require.Same(t, p.ups[0], p.pick([]*upstream{p.ups[1]}), "skips the replicas already tried")
	require.Nil(t, p.pick([]*upstream{p.ups[0], p.ups[1]}))
}

func TestRequestBodyOverLimit(t *testing.T) {
	t.Parallel()
	orch, mp := newFakeUpstream(t, "orch"), newFakeUpstream(t, "mp")
	b := setup(t, Config{Upstreams: Upstreams{Orchestrator: []string{orch.srv.URL}, ModelPolicy: []string{mp.srv.URL}}})
	a := do(t, "POST", b.srv.URL+"/v1/agents/agt_1/runs", nil, `{"input":"`+strings.Repeat("x", 1<<20)+`"}`)
	require.Equal(t, 413, a.status)
	require.Equal(t, "invalid_request", errorCode(a))
	require.Zero(t, orch.hits.Load())
}

func FuzzParseUpstreams(f *testing.F) {
	f.Add("orchestrator: [http://127.0.0.1:1]\nmodel-policy: [http://127.0.0.1:2]\n")
	f.Add("orchestrator: [http://a:1]\nmodel-policy: [http://b:1]\ndedicated: [{name: x, tenants: [tnt_a], orchestrator: [https://c:1/]}]\n")
	f.Add("dedicated: [{name: 1, tenants: {}}]")
	f.Fuzz(func(t *testing.T, doc string) {
		u, err := ParseUpstreams([]byte(doc))
		if err != nil {
			return
		}
		// Whatever parses builds a gateway.
		_, err = New(Config{Upstreams: u, Tenant: func(*http.Request) string { return "" },
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
	})
}

// TestServesConsoleItself checks that /console is answered by the
// gateway's Console handler, never proxied, and that other paths still are.
func TestServesConsoleItself(t *testing.T) {
	t.Parallel()
	orch, mp := newFakeUpstream(t, "orch"), newFakeUpstream(t, "mp")
	console := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"console":"`+r.URL.Path+`"}`)
	})
	b := setup(t, Config{Upstreams: Upstreams{Orchestrator: []string{orch.srv.URL}, ModelPolicy: []string{mp.srv.URL}}, Console: console})
	for _, p := range []string{"/console", "/console/runs/run_1", "/console/assets/app.css"} {
		a := do(t, "GET", b.srv.URL+p, nil, "")
		require.Equal(t, 200, a.status, p)
		require.Equal(t, p, a.body["console"], p)
	}
	require.Zero(t, orch.hits.Load(), "no console request reached the orchestrator")
	a := do(t, "GET", b.srv.URL+"/consolex", nil, "")
	require.Equal(t, "orch", a.body["upstream"], "only /console and below are the console's")
}
