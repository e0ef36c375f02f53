package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/supervisor"
	"github.com/nexixai/agentos/tests/testnode"
)

// fakeEnv makes the test binary act as an AgentOS service when the
// supervisor spawns it (`<test binary> serve <name> ...`), so that up,
// validate, status, redeploy and nuke run against real processes without
// depending on the real services.
const fakeEnv = "AGENTOS_TEST_FAKE_SERVICE"

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) == "1" && len(os.Args) >= 3 && os.Args[1] == "serve" {
		os.Exit(runFakeService(os.Args[2]))
	}
	os.Exit(m.Run())
}

// runFakeService serves a minimal, honest imitation of one service. Like
// the real one, it resolves its settings with config.Load from the
// environment and the --env-file the supervisor passes.
func runFakeService(name string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	envFile := ""
	for i, a := range os.Args {
		if a == "--env-file" && i+1 < len(os.Args) {
			envFile = os.Args[i+1]
		}
	}
	cfg, err := config.Load(os.LookupEnv, envFile)
	if err == nil {
		err = cfg.Finish()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var addr string
	var h http.Handler
	switch name {
	case "model-policy":
		addr = cfg.ModelPolicyAddr
		h = newFakeModelPolicy()
	case "orchestrator":
		addr = cfg.OrchestratorAddr
		f, err := newFakeOrchestrator(cfg.Home, cfg.ModelPolicyURL, cfg.Mode == config.ModeProd)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		h = f
	default:
		fmt.Fprintln(os.Stderr, "unknown fake service", name)
		return 2
	}
	fmt.Printf("fake %s listening on %s\n", name, addr)
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string, details map[string]any) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg, "retryable": false, "details": details}, "correlation_id": "corr_fake"})
}

func newFakeModelPolicy() http.Handler {
	var mu sync.Mutex
	requests := 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{"status": "ok", "service": "model-policy", "version": "0.0.0-fake"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]any{"status": "ok"}) })
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "# TYPE agentos_model_requests_total counter\nagentos_model_requests_total{tenant=\"tnt_demo\"} %d\n", requests)
	})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{"models": []any{map[string]any{"model_id": "builtin/echo", "tiers": []string{"fast"}}}})
	})
	mux.HandleFunc("POST /v1/policy:check", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			PolicyCheck struct {
				RequestID string `json:"request_id"`
			} `json:"policy_check"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		requests++
		mu.Unlock()
		writeJSON(w, 200, map[string]any{"policy_result": map[string]any{"request_id": body.PolicyCheck.RequestID, "decision": "redacted", "reasons": []string{"pii.email"}}})
	})
	mux.HandleFunc("POST /internal/model-call", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		writeJSON(w, 200, map[string]any{})
	})
	return mux
}

// fakeOrchestrator keeps tenants, tokens, agents and runs in memory.
type fakeOrchestrator struct {
	mu      sync.Mutex
	tenants map[string]store.Tenant
	tokens  map[string][2]string // secret -> tenant, role
	ids     map[string]string    // token id -> secret
	runs    map[string]store.Run
	events  map[string][]store.Event
	created int
	mpURL   string
	prod    bool
	mux     *http.ServeMux
}

func randHexT(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newFakeOrchestrator(home, mpURL string, prod bool) (*fakeOrchestrator, error) {
	f := &fakeOrchestrator{tenants: map[string]store.Tenant{}, tokens: map[string][2]string{}, ids: map[string]string{},
		runs: map[string]store.Run{}, events: map[string][]store.Event{}, mpURL: mpURL, prod: prod}
	f.tenants["tnt_demo"] = store.Tenant{TenantID: "tnt_demo", Name: "Demo", Status: "active"}
	credsPath := filepath.Join(home, "credentials.json")
	if b, err := os.ReadFile(filepath.Join(home, "secrets", "bootstrap-admin.token")); err == nil {
		f.tokens[strings.TrimSpace(string(b))] = [2]string{"", "platform_admin"}
	}
	if prod {
		f.mux = f.routes()
		return f, nil
	}
	creds, err := loadCredentials(credsPath)
	if err != nil {
		creds = &Credentials{TenantID: "tnt_demo", CreatedAt: time.Now().UTC(),
			PlatformAdmin: Credential{PrincipalID: "usr_platform_admin", TokenID: "tok_pa", Token: "pa_" + randHexT(8)},
			TenantAdmin:   Credential{PrincipalID: "usr_tnt_demo_admin", TokenID: "tok_ta", Token: "ta_" + randHexT(8)}}
		if err := saveCredentials(credsPath, creds); err != nil {
			return nil, err
		}
	}
	f.tokens[creds.PlatformAdmin.Token] = [2]string{"tnt_demo", "platform_admin"}
	f.tokens[creds.TenantAdmin.Token] = [2]string{"tnt_demo", "tenant_admin"}
	f.mux = f.routes()
	return f, nil
}

// routes registers the fake's handlers.
func (f *fakeOrchestrator) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{"status": "ok", "service": "agent-orchestrator", "version": "0.0.0-fake"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := apiclient.GetHealth(r.Context(), &http.Client{Timeout: time.Second}, f.mpURL, "/v1/health"); err != nil {
			writeErr(w, 503, "dependency_unavailable", "model-policy unreachable", map[string]any{"dependency": "model-policy"})
			return
		}
		writeJSON(w, 200, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		fmt.Fprintf(w, "agentos_runs_total{status=\"completed\"} %d\n", f.created)
	})
	mux.HandleFunc("GET /v1/admin/tenants", f.admin(func(w http.ResponseWriter, _ *http.Request, _ string) {
		var ts []store.Tenant
		for _, t := range f.tenants {
			ts = append(ts, t)
		}
		writeJSON(w, 200, map[string]any{"tenants": ts})
	}))
	mux.HandleFunc("POST /v1/admin/tenants", f.admin(func(w http.ResponseWriter, r *http.Request, _ string) {
		var body struct {
			TenantCreate store.Tenant `json:"tenant_create"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		t := body.TenantCreate
		if _, ok := f.tenants[t.TenantID]; ok {
			writeErr(w, 409, "conflict", "exists", nil)
			return
		}
		t.Status = "active"
		f.tenants[t.TenantID] = t
		writeJSON(w, 201, map[string]any{"tenant": t})
	}))
	mux.HandleFunc("GET /v1/admin/tenants/{id}", f.admin(func(w http.ResponseWriter, r *http.Request, _ string) {
		t, ok := f.tenants[r.PathValue("id")]
		if !ok {
			writeErr(w, 404, "not_found", "no tenant", nil)
			return
		}
		writeJSON(w, 200, map[string]any{"tenant": t})
	}))
	mux.HandleFunc("PATCH /v1/admin/tenants/{id}", f.admin(func(w http.ResponseWriter, r *http.Request, _ string) {
		t, ok := f.tenants[r.PathValue("id")]
		if !ok {
			writeErr(w, 404, "not_found", "no tenant", nil)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&t)
		f.tenants[t.TenantID] = t
		writeJSON(w, 200, map[string]any{"tenant": t})
	}))
	mux.HandleFunc("PUT /v1/admin/agents/{id}", f.tenant(func(w http.ResponseWriter, r *http.Request, tenant string) {
		var body struct {
			Agent store.Agent `json:"agent"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Agent.ModelRef == "" {
			writeErr(w, 400, "invalid_request", "agent.model_ref: required", nil)
			return
		}
		a := body.Agent
		a.AgentID, a.TenantID, a.Version, a.Status = r.PathValue("id"), tenant, 1, "active"
		writeJSON(w, 200, map[string]any{"agent": a})
	}))
	mux.HandleFunc("POST /v1/admin/tenants/{id}/tokens", f.admin(func(w http.ResponseWriter, r *http.Request, _ string) {
		var req apiclient.TokenRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		secret, id := "tk_"+randHexT(8), "tok_"+randHexT(4)
		role := "tenant_user"
		if len(req.Roles) > 0 {
			role = req.Roles[0]
		}
		f.tokens[secret] = [2]string{r.PathValue("id"), role}
		f.ids[id] = secret
		writeJSON(w, 201, map[string]any{"token": apiclient.IssuedToken{TokenID: id, Secret: secret, PrincipalID: req.PrincipalID}})
	}))
	mux.HandleFunc("DELETE /v1/admin/tenants/{id}/tokens/{tok}", f.admin(func(w http.ResponseWriter, r *http.Request, _ string) {
		delete(f.tokens, f.ids[r.PathValue("tok")])
		w.WriteHeader(204)
	}))
	mux.HandleFunc("GET /v1/agents/{id}", f.tenant(func(w http.ResponseWriter, r *http.Request, tenant string) {
		id := r.PathValue("id")
		if tenant != "tnt_demo" || (id != sampleAgentID && id != "my-agent" && id != "agt_demo") {
			writeErr(w, 404, "not_found", "no agent", nil)
			return
		}
		writeJSON(w, 200, map[string]any{"agent": store.Agent{AgentID: id, TenantID: tenant, Status: "active", ModelRef: "tier:fast"}})
	}))
	mux.HandleFunc("GET /v1/agents", f.tenant(func(w http.ResponseWriter, _ *http.Request, tenant string) {
		writeJSON(w, 200, map[string]any{"agents": []store.Agent{{AgentID: sampleAgentID, TenantID: tenant}}})
	}))
	mux.HandleFunc("POST /v1/agents/{id}/runs", f.tenant(func(w http.ResponseWriter, r *http.Request, tenant string) {
		var body struct {
			Input  store.RunInput   `json:"input"`
			Stream *store.RunStream `json:"stream"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		if id := r.PathValue("id"); id != sampleAgentID && id != "my-agent" && id != "agt_demo" {
			writeErr(w, 404, "not_found", "agent "+id+" not found", nil)
			return
		}
		run := store.Run{TenantID: tenant, AgentID: r.PathValue("id"), RunID: "run_" + randHexT(8), Status: store.RunCompleted, Output: &store.Output{Type: "text", Text: body.Input.Text}}
		// A model call goes through model-policy: count it there.
		if resp, err := http.Post(f.mpURL+"/internal/model-call", "application/json", nil); err == nil {
			resp.Body.Close()
		} else {
			run.Status = store.RunFailed
		}
		f.runs[run.RunID] = run
		f.created++
		mk := func(seq int64, typ string, pl any) store.Event {
			b, _ := json.Marshal(pl)
			return store.Event{EventID: fmt.Sprintf("evt_%d", seq), Sequence: seq, Type: typ, TenantID: tenant, RunID: run.RunID, AgentID: run.AgentID, Payload: b}
		}
		evs := []store.Event{mk(1, store.EventRunCreated, map[string]any{"status": "queued"})}
		if run.Status == store.RunCompleted && body.Stream != nil && body.Stream.Tokens {
			evs = append(evs, mk(2, store.EventModelDelta, map[string]any{"step_id": "stp_1", "index": 0, "text": body.Input.Text}))
		}
		if n := int64(len(evs)); run.Status == store.RunCompleted {
			evs = append(evs,
				mk(n+1, store.EventModelCompleted, map[string]any{"model_ref": "tier:fast", "status": "ok", "policy_outcome": map[string]any{"decision": "allowed"}, "route": map[string]any{"backend": "builtin"}}),
				mk(n+2, store.EventToolCallCompleted, map[string]any{"tool_id": "tool.echo", "status": "ok", "output": map[string]any{"text": body.Input.Text}}),
				mk(n+3, store.EventRunCompleted, map[string]any{"status": "completed", "output": map[string]any{"type": "text", "text": body.Input.Text}}))
		} else {
			evs = append(evs, mk(2, store.EventRunFailed, map[string]any{"status": "failed", "error": map[string]any{"code": "dependency_unavailable", "message": "model-policy down"}}))
		}
		f.events[run.RunID] = evs
		writeJSON(w, 201, map[string]any{"run": run})
	}))
	mux.HandleFunc("GET /v1/runs/{id}", f.tenant(func(w http.ResponseWriter, r *http.Request, tenant string) {
		run, ok := f.runs[r.PathValue("id")]
		if !ok || run.TenantID != tenant {
			writeErr(w, 404, "not_found", "no run", nil)
			return
		}
		writeJSON(w, 200, map[string]any{"run": run})
	}))
	mux.HandleFunc("GET /v1/runs/{id}/events", f.tenant(func(w http.ResponseWriter, r *http.Request, tenant string) {
		run, ok := f.runs[r.PathValue("id")]
		if !ok || run.TenantID != tenant {
			writeErr(w, 404, "not_found", "no run", nil)
			return
		}
		evs := f.events[run.RunID]
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			writeJSON(w, 200, map[string]any{"events": evs})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": ping\n\n")
		for _, ev := range evs {
			b, _ := json.Marshal(map[string]any{"event": ev})
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Sequence, ev.Type, b)
		}
	}))
	return mux
}

func (f *fakeOrchestrator) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

// who resolves the caller's tenant and role; X-Tenant-Id alone is a tenant
// user (demo mode), and selects the tenant for a platform admin.
func (f *fakeOrchestrator) who(r *http.Request) (tenant, role string, ok bool) {
	if tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "); tok != "" {
		tr, found := f.tokens[tok]
		if !found {
			return "", "", false
		}
		tenant, role = tr[0], tr[1]
		if role == "platform_admin" && r.Header.Get("X-Tenant-Id") != "" {
			tenant = r.Header.Get("X-Tenant-Id")
		}
		return tenant, role, true
	}
	if t := r.Header.Get("X-Tenant-Id"); t != "" && !f.prod {
		return t, "tenant_user", true
	}
	return "", "", false
}

func (f *fakeOrchestrator) tenant(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		tenant, _, ok := f.who(r)
		if !ok {
			writeErr(w, 401, "unauthorized", "no credentials", nil)
			return
		}
		h(w, r, tenant)
	}
}

func (f *fakeOrchestrator) admin(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		tenant, role, ok := f.who(r)
		if !ok {
			writeErr(w, 401, "unauthorized", "no credentials", nil)
			return
		}
		if role != "platform_admin" {
			writeErr(w, 403, "forbidden", "admin only", nil)
			return
		}
		h(w, r, tenant)
	}
}

// freeAddr returns a loopback address with a free port (see
// testnode.FreeAddr for why not :0).
func freeAddr(t *testing.T) string {
	t.Helper()
	return testnode.FreeAddr(t)
}

// newFakeNode is a node in a temp home whose services are this test binary.
func newFakeNode(t *testing.T) *supervisor.Node {
	t.Helper()
	home := t.TempDir()
	cfg, err := config.Load(func(string) (string, bool) { return "", false }, filepath.Join(home, "none.env"))
	require.NoError(t, err)
	cfg.Home = home
	cfg.OrchestratorAddr = freeAddr(t)
	cfg.ModelPolicyAddr = freeAddr(t)
	require.NoError(t, cfg.Finish())
	n, err := supervisor.New(cfg, "", map[string]bool{"orchestrator": true, "model-policy": true})
	require.NoError(t, err)
	exe, err := os.Executable()
	require.NoError(t, err)
	n.Exe = exe
	n.ExtraEnv = []string{fakeEnv + "=1"}
	t.Cleanup(func() {
		for _, s := range n.Services {
			_, _ = n.Stop(s.Name, 5*time.Second)
		}
	})
	return n
}

// The supervisor's own tests are in internal/supervisor; this one checks
// what status makes of a pid file whose process is gone.
func TestStatusReportsStalePID(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	ctx := context.Background()
	s, _ := n.Service("model-policy")
	pid, err := n.Start(s)
	require.NoError(t, err)
	require.NoError(t, n.WaitHealthy(ctx, s, pid, 30*time.Second))
	require.Equal(t, "healthy", nodeStatus(ctx, n).Services[0].State)
	was, err := n.Stop("model-policy", 5*time.Second)
	require.NoError(t, err)
	require.True(t, was)

	// A stale pid file (process gone) is reported as such and not signalled.
	require.NoError(t, os.WriteFile(n.PIDFile("model-policy"), []byte(fmt.Sprint(pid)), 0o644))
	ns := nodeStatus(ctx, n)
	require.Equal(t, "stale-pid", ns.Services[0].State)
	require.False(t, ns.Healthy)
	was, err = n.Stop("model-policy", time.Second)
	require.NoError(t, err)
	require.False(t, was)
}

func netListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func readEnv(p string) (map[string]string, error) { return config.ReadEnvFile(p) }
