package agentorchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/queue"
	queuesqlite "github.com/nexixai/agentos/internal/queue/sqlite"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/internal/store/storecache"
	"github.com/nexixai/agentos/internal/tenancy"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
)

// scriptedModel is a test double of model-policy: it plans one call of the
// first offered tool, then answers with the tool's output. Knobs make it
// loop forever, fail, or block.
type scriptedModel struct {
	alwaysTool atomic.Bool
	fail       atomic.Pointer[errs.Error]
	calls      atomic.Int64
	// blockFrom, when > 0, makes call number blockFrom and later block
	// until their context ends (a model call in flight at a crash).
	blockFrom atomic.Int64
}

func (m *scriptedModel) Chat(ctx context.Context, ac auth.Context, req modelport.ChatRequest) (modelport.ChatResponse, error) {
	n := m.calls.Add(1)
	if from := m.blockFrom.Load(); from > 0 && n >= from {
		<-ctx.Done()
		return modelport.ChatResponse{}, ctx.Err()
	}
	if e := m.fail.Load(); e != nil {
		return modelport.ChatResponse{}, e
	}
	if ac.TenantID == "" {
		return modelport.ChatResponse{}, errs.E(errs.Unauthorized, "no tenant")
	}
	msgs := req.Input.Messages
	last := msgs[len(msgs)-1]
	resp := modelport.ChatResponse{RequestID: req.RequestID, Status: "ok",
		Usage:         modelport.Usage{InputTokens: 3, OutputTokens: 2, TotalTokens: 5},
		PolicyOutcome: modelport.PolicyOutcome{Decision: "allowed", Reasons: []string{}, Redactions: []modelport.Redaction{}},
		Route:         modelport.Route{Backend: "scripted", Model: "test"}}
	if len(req.Input.Tools) > 0 && (last.Role != "tool" || m.alwaysTool.Load()) {
		user := ""
		for _, msg := range msgs {
			if msg.Role == "user" {
				user = msg.Content
			}
		}
		args, _ := json.Marshal(map[string]string{"text": user})
		t := req.Input.Tools[0]
		resp.Output = modelport.ChatOutput{Type: "chat", Message: modelport.Message{Role: "assistant"},
			ToolCalls: []modelport.ToolCall{{ID: "call_1", ToolID: t.ToolID, Name: t.Name, Arguments: args}}}
		return resp, nil
	}
	resp.Output = modelport.ChatOutput{Type: "chat", Message: modelport.Message{Role: "assistant", Content: "Echo: " + last.Content}}
	return resp, nil
}

func (m *scriptedModel) Embed(context.Context, auth.Context, modelport.EmbedRequest) (modelport.EmbedResponse, error) {
	return modelport.EmbedResponse{}, errs.E(errs.InvalidRequest, "embed is not used by the orchestrator tests")
}

func (m *scriptedModel) PolicyCheck(context.Context, auth.Context, modelport.PolicyCheckRequest) (modelport.PolicyCheckResult, error) {
	return modelport.PolicyCheckResult{Decision: "allowed"}, nil
}

func (m *scriptedModel) ListModels(context.Context, auth.Context) ([]modelport.Model, error) {
	return nil, nil
}

// blockingTool blocks until released or its context ends, counting calls.
type blockingTool struct {
	id         string
	idempotent bool
	started    chan struct{}
	release    chan struct{}
	calls      atomic.Int64
	ctxErr     atomic.Pointer[error]
}

func newBlockingTool(id string, idempotent bool) *blockingTool {
	return &blockingTool{id: id, idempotent: idempotent, started: make(chan struct{}, 16), release: make(chan struct{})}
}

func (b *blockingTool) Spec() tools.Spec {
	return tools.Spec{ToolID: b.id, Name: b.id, Description: "blocks until released",
		InputSchema: json.RawMessage(`{"type":"object"}`), Idempotent: b.idempotent, DefaultTimeout: time.Minute}
}

func (b *blockingTool) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	b.calls.Add(1)
	b.started <- struct{}{}
	select {
	case <-b.release:
		return json.RawMessage(`{"text":"released"}`), nil
	case <-ctx.Done():
		err := ctx.Err()
		b.ctxErr.Store(&err)
		return nil, err
	}
}

type testBundle struct {
	t      testing.TB
	db     *sqlite.DB
	srv    *Server
	http   *httptest.Server
	model  *scriptedModel
	tools  *tools.Registry
	dbPath string
}

type bundleOpts struct {
	dbPath    string
	extra     []tools.Tool
	leaseTTL  time.Duration
	heartbeat time.Duration
	model     *scriptedModel
	port      modelport.Port // overrides model when set
	cached    bool           // serve tenants and agents through storecache, as the node does
	noExec    bool           // do not start the scheduler (admission-only benchmarks, tests that start it)
	tenantFn  func(*store.Tenant)
	// modelProbe is Config.ModelProbe.
	modelProbe func(context.Context) error
	// fetchAllow is the node's AGENTOS_HTTP_FETCH_ALLOW (webhook tools too).
	fetchAllow string
	// mcpAllow is the node's AGENTOS_MCP_HTTP_ALLOW.
	mcpAllow string
	// wrapStore wraps the store the server uses.
	wrapStore func(store.Store) store.Store
	// leases, when set, records the scheduler's lease calls.
	leases *leaseLog
	// bus and storePoll are Config.Bus and Config.StorePoll.
	bus       func(store.Store) bus.Bus
	storePoll time.Duration
	// cfgFn adjusts the node's configuration.
	cfgFn func(*config.Config)
}

// leaseLog records the scheduler's lease calls (Server.leased), so a test
// can wait until the scheduler has decided what to lease, rather than sleep.
type leaseLog struct {
	mu       sync.Mutex
	rounds   int
	byTenant map[string]int
	changed  chan struct{}
}

func newLeaseLog() *leaseLog {
	return &leaseLog{byTenant: map[string]int{}, changed: make(chan struct{}, 1)}
}

func (l *leaseLog) record(leases []queue.Lease) {
	l.mu.Lock()
	l.rounds++
	for _, ls := range leases {
		l.byTenant[ls.TenantID]++
	}
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// snapshot returns how many lease calls were made and how many runs of
// tenantID they leased.
func (l *leaseLog) snapshot(tenantID string) (rounds, leased int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rounds, l.byTenant[tenantID]
}

// waitRounds waits until at least n lease calls have been made.
func (l *leaseLog) waitRounds(t testing.TB, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		if r, _ := l.snapshot(""); r >= n {
			return
		}
		select {
		case <-l.changed:
		case <-timeout:
			t.Fatalf("the scheduler made fewer than %d lease calls", n)
		}
	}
}

func setup(t testing.TB, o bundleOpts) *testBundle {
	t.Helper()
	ctx := context.Background()
	if o.dbPath == "" {
		o.dbPath = filepath.Join(t.TempDir(), "agentos.db")
	}
	db, err := sqlite.Open(ctx, o.dbPath)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	cfg, err := config.Load(func(string) (string, bool) { return "", false }, filepath.Join(t.TempDir(), "none.env"))
	require.NoError(t, err)
	cfg.Home = t.TempDir()
	cfg.HTTPFetchAllow = o.fetchAllow
	cfg.MCPHTTPAllow = o.mcpAllow
	if o.cfgFn != nil {
		o.cfgFn(&cfg)
	}
	require.NoError(t, cfg.Finish())
	for _, id := range []string{"tnt_a", "tnt_b"} {
		if _, err := db.GetTenant(ctx, id); err == nil {
			continue
		}
		tn := tenancy.NewTenant(id, id, cfg)
		if o.tenantFn != nil {
			o.tenantFn(&tn)
		}
		require.NoError(t, db.CreateTenant(ctx, tn))
	}
	reg := tools.NewRegistry()
	require.NoError(t, builtin.Register(reg, builtin.Deps{KV: db}))
	for _, tl := range o.extra {
		require.NoError(t, reg.Register(tl))
	}
	for _, tn := range []string{"tnt_a", "tnt_b"} {
		require.NoError(t, db.PutAgent(ctx, store.Agent{AgentID: "agt_echo", TenantID: tn, Name: "echo", Version: 1,
			Status: store.AgentActive, ModelRef: "tier:fast", Instructions: "echo", Tools: []string{"tool.echo"},
			Defaults: store.AgentDefaults{MaxSteps: 4, TimeoutMs: 60000}, CreatedAt: time.Now(), UpdatedAt: time.Now()}))
		for _, tl := range o.extra {
			require.NoError(t, db.PutAgent(ctx, store.Agent{AgentID: "agt_" + tl.Spec().ToolID, TenantID: tn, Name: "x", Version: 1,
				Status: store.AgentActive, ModelRef: "tier:fast", Tools: []string{tl.Spec().ToolID},
				Defaults: store.AgentDefaults{MaxSteps: 4, TimeoutMs: 60000}, CreatedAt: time.Now(), UpdatedAt: time.Now()}))
		}
	}
	var tenants auth.TenantLookup = db
	if o.cached {
		tenants = storecache.New(db, 0)
	}
	authn, err := auth.New(auth.Config{Mode: config.ModeDemo, Tenants: tenants, Tokens: db})
	require.NoError(t, err)
	model := o.model
	if model == nil {
		model = &scriptedModel{}
	}
	var port modelport.Port = model
	if o.port != nil {
		port = o.port
	}
	var st store.Store = db
	if o.cached {
		st = storecache.New(db, 0)
	}
	if o.wrapStore != nil {
		st = o.wrapStore(st)
	}
	var eventBus bus.Bus
	if o.bus != nil {
		eventBus = o.bus(st)
	}
	srv, err := New(Config{Store: st, Queue: queuesqlite.New(db), Bus: eventBus, StorePoll: o.storePoll, Authenticate: authn.Middleware,
		Audit: audit.New(db, nil), Limiter: tenancy.NewLimiter(), Model: port, Tools: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Node: cfg, Executors: 4,
		LeaseTTL: o.leaseTTL, PollInterval: 20 * time.Millisecond, Heartbeat: o.heartbeat, ModelProbe: o.modelProbe})
	require.NoError(t, err)
	if o.leases != nil {
		srv.leased = o.leases.record
	}
	if !o.noExec {
		require.NoError(t, srv.Start(ctx))
	}
	hs := httptest.NewServer(srv.Handler())
	b := &testBundle{t: t, db: db, srv: srv, http: hs, model: model, tools: reg, dbPath: o.dbPath}
	t.Cleanup(b.close)
	return b
}

var closeOnce sync.Map

func (b *testBundle) close() {
	if _, done := closeOnce.LoadOrStore(b, true); done {
		return
	}
	b.http.CloseClientConnections()
	b.http.Close()
	b.srv.Stop()
}

// do sends a request as tenant and decodes a JSON response.
func (b *testBundle) do(method, path, tenant string, body any, hdr ...string) (*http.Response, map[string]any) {
	b.t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(v)
	default:
		j, err := json.Marshal(v)
		require.NoError(b.t, err)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.http.URL+path, rd)
	require.NoError(b.t, err)
	if tenant != "" {
		req.Header.Set("X-Tenant-Id", tenant)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.http.Client().Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	var out map[string]any
	if len(raw) > 0 && resp.Header.Get("Content-Type") == "application/json" {
		require.NoError(b.t, json.Unmarshal(raw, &out), string(raw))
	}
	return resp, out
}

func (b *testBundle) createRun(tenant, agent string, body any) string {
	b.t.Helper()
	resp, out := b.do("POST", "/v1/agents/"+agent+"/runs", tenant, body)
	require.Equal(b.t, http.StatusCreated, resp.StatusCode, out)
	return out["run"].(map[string]any)["run_id"].(string)
}

func (b *testBundle) waitStatus(tenant, runID string, want store.RunStatus) store.Run {
	b.t.Helper()
	var run store.Run
	require.Eventually(b.t, func() bool {
		var err error
		run, err = b.db.GetRun(context.Background(), tenant, runID)
		require.NoError(b.t, err)
		return run.Status == want
	}, 20*time.Second, 10*time.Millisecond, "run %s never reached %s", runID, want)
	return run
}

// streamEvents reads the SSE stream of a run to its end.
func (b *testBundle) streamEvents(tenant, runID string, hdr ...string) []store.Event {
	b.t.Helper()
	req, err := http.NewRequest("GET", b.http.URL+"/v1/runs/"+runID+"/events", nil)
	require.NoError(b.t, err)
	req.Header.Set("X-Tenant-Id", tenant)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := b.http.Client().Do(req.WithContext(ctx))
	require.NoError(b.t, err)
	defer resp.Body.Close()
	require.Equal(b.t, http.StatusOK, resp.StatusCode)
	require.Equal(b.t, "text/event-stream", resp.Header.Get("Content-Type"))
	var evs []store.Event
	require.NoError(b.t, events.ReadSSE(resp.Body, func(f events.Frame) error {
		e, err := events.DecodeFrame(f)
		require.NoError(b.t, err)
		evs = append(evs, e)
		return nil
	}))
	return evs
}

func eventTypes(evs []store.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func requireGapless(t *testing.T, evs []store.Event, from int64) {
	t.Helper()
	for i, e := range evs {
		require.Equal(t, from+int64(i), e.Sequence, "sequence gap or duplicate at index %d", i)
	}
}
