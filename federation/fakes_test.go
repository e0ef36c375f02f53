package federation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// memStore is an in-memory Store for tests.
type memStore struct {
	mu       sync.Mutex
	tenants  map[string]store.Tenant
	forwards map[string]store.Forward
	jtis     map[string]time.Time
	ingested map[string]store.IngestedEvent
	order    []string
}

func newMemStore(tenants ...store.Tenant) *memStore {
	m := &memStore{tenants: map[string]store.Tenant{}, forwards: map[string]store.Forward{},
		jtis: map[string]time.Time{}, ingested: map[string]store.IngestedEvent{}}
	for _, t := range tenants {
		m.tenants[t.TenantID] = t
	}
	return m
}

func (m *memStore) GetTenant(_ context.Context, id string) (store.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[id]
	if !ok {
		return t, errs.E(errs.NotFound, "tenant not found")
	}
	return t, nil
}

func (m *memStore) setStatus(id, status string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tenants[id]
	t.Status = status
	m.tenants[id] = t
}

func (m *memStore) Ping(context.Context) error { return nil }

func (m *memStore) PutForward(_ context.Context, f store.Forward) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := f.TenantID + "/" + f.RunID
	if _, ok := m.forwards[k]; ok {
		return errs.E(errs.Conflict, "exists")
	}
	m.forwards[k] = f
	return nil
}

func (m *memStore) GetForward(_ context.Context, tenantID, runID string) (store.Forward, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.forwards[tenantID+"/"+runID]
	if !ok {
		return f, errs.E(errs.NotFound, "not found")
	}
	return f, nil
}

func (m *memStore) UseJTI(_ context.Context, jti string, exp time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.jtis[jti]; ok {
		return false, nil
	}
	m.jtis[jti] = exp
	return true, nil
}

func (m *memStore) IngestEvent(_ context.Context, e store.IngestedEvent) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.ingested[e.Event.EventID]; ok {
		return false, nil
	}
	m.ingested[e.Event.EventID] = e
	m.order = append(m.order, e.Event.EventID)
	return true, nil
}

func (m *memStore) ListIngestedEvents(_ context.Context, tenantID, runID, source string) ([]store.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Event
	for _, id := range m.order {
		in := m.ingested[id]
		if in.Event.TenantID == tenantID && in.Event.RunID == runID && (source == "" || in.SourceStack == source) {
			out = append(out, in.Event)
		}
	}
	slices.SortFunc(out, func(a, b store.Event) int { return int(a.Sequence - b.Sequence) })
	return out, nil
}

// memAudit records audit records.
type memAudit struct {
	mu      sync.Mutex
	records []store.AuditRecord
}

func (a *memAudit) Record(_ context.Context, r store.AuditRecord) (store.AuditRecord, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.records = append(a.records, r)
	return r, nil
}

func (a *memAudit) actions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, r := range a.records {
		out = append(out, r.Action+":"+r.Outcome)
	}
	return out
}

// jsonMinter "signs" an Auth Context as base64 JSON; fakeOrchestrator reads it.
type jsonMinter struct{}

func (jsonMinter) Mint(ac auth.Context, _ string, _ time.Duration) (string, error) {
	b, err := json.Marshal(ac)
	return base64.RawURLEncoding.EncodeToString(b), err
}

func acFromBearer(r *http.Request) (auth.Context, bool) {
	var ac auth.Context
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	return ac, err == nil && json.Unmarshal(b, &ac) == nil && ac.TenantID != ""
}

// fakeOrchestrator implements the slice of CONTRACT §4 that federation
// uses: create run (idempotent), events as SSE or JSON, tenant-scoped.
type fakeOrchestrator struct {
	mu     sync.Mutex
	runs   map[string]store.Run
	events map[string][]store.Event
	idem   map[string]string
	srv    *httptest.Server
	// hold makes SSE streams stop before the terminal event and stay open
	// until the client goes away (a run that is still going).
	hold atomic.Bool
}

func newFakeOrchestrator() *fakeOrchestrator {
	o := &fakeOrchestrator{runs: map[string]store.Run{}, events: map[string][]store.Event{}, idem: map[string]string{}}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/agents/{agent_id}/runs", httpx.H(o.create))
	mux.Handle("GET /v1/runs/{run_id}/events", httpx.H(o.stream))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	o.srv = httptest.NewServer(httpx.Chain(mux, httpx.IDs))
	return o
}

func (o *fakeOrchestrator) runCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.runs)
}

func (o *fakeOrchestrator) create(w http.ResponseWriter, r *http.Request) error {
	ac, ok := acFromBearer(r)
	if !ok {
		return errs.E(errs.Unauthorized, "no credential")
	}
	if !ac.HasScope(auth.ScopeRunsCreate) {
		return errs.E(errs.Forbidden, "missing scope")
	}
	agentID := r.PathValue("agent_id")
	if agentID == "agt_missing" {
		return errs.E(errs.NotFound, "agent %s not found", agentID)
	}
	var body struct {
		Input json.RawMessage `json:"input"`
	}
	if err := httpx.Decode(r, &body); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	key := r.Header.Get("Idempotency-Key")
	ik := ac.TenantID + "/" + ac.Principal.PrincipalID + "/" + agentID + "/" + key
	if key != "" {
		if id, ok := o.idem[ik]; ok {
			w.Header().Set("Idempotent-Replayed", "true")
			httpx.JSON(w, r, http.StatusOK, map[string]any{"run": o.runs[id]})
			return nil
		}
	}
	run := store.Run{TenantID: ac.TenantID, AgentID: agentID, RunID: ids.New("run_"), PrincipalID: ac.Principal.PrincipalID,
		Status: store.RunQueued, CreatedAt: time.Now().UTC()}
	run.EventsURL = "/v1/runs/" + run.RunID + "/events"
	o.runs[run.RunID] = run
	if key != "" {
		o.idem[ik] = run.RunID
	}
	tp := httpx.TraceFrom(r.Context())
	for i, typ := range []string{store.EventRunCreated, store.EventStepStarted, store.EventModelRequested,
		store.EventModelCompleted, store.EventRunCompleted} {
		o.events[run.RunID] = append(o.events[run.RunID], store.Event{EventID: ids.New("evt_"), Sequence: int64(i + 1),
			Time: time.Now().UTC(), Type: typ, TenantID: run.TenantID, AgentID: agentID, RunID: run.RunID,
			Trace:   store.EventTrace{Traceparent: tp.Traceparent(), SpanID: tp.SpanID},
			Payload: json.RawMessage(`{"status":"ok"}`)})
	}
	httpx.JSON(w, r, http.StatusCreated, map[string]any{"run": run})
	return nil
}

func (o *fakeOrchestrator) stream(w http.ResponseWriter, r *http.Request) error {
	ac, ok := acFromBearer(r)
	if !ok {
		return errs.E(errs.Unauthorized, "no credential")
	}
	o.mu.Lock()
	run, found := o.runs[r.PathValue("run_id")]
	evs := o.events[run.RunID]
	o.mu.Unlock()
	if !found || run.TenantID != ac.TenantID {
		return errs.E(errs.NotFound, "run not found")
	}
	after, _ := strconv.ParseInt(r.URL.Query().Get("after_sequence"), 10, 64)
	var sel []store.Event
	for _, e := range evs {
		if e.Sequence > after {
			sel = append(sel, e)
		}
	}
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		httpx.JSON(w, r, http.StatusOK, map[string]any{"events": sel, "next_after_sequence": int64(len(evs))})
		return nil
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": ping\n\n")
	for _, e := range sel {
		if o.hold.Load() && store.IsTerminalEvent(e.Type) {
			break
		}
		b, _ := json.Marshal(map[string]any{"event": e})
		fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Sequence, e.Type, b)
	}
	if o.hold.Load() {
		_ = http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}
	return nil
}

// headerAuth is a test Authenticator: X-Tenant-Id (+ X-Principal-Id,
// X-Scopes, X-Roles) names the caller; the tenant must exist and be active.
func headerAuth(st *memStore) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return httpx.H(func(w http.ResponseWriter, r *http.Request) error {
			tid := r.Header.Get("X-Tenant-Id")
			t, err := st.GetTenant(r.Context(), tid)
			if err != nil {
				return errs.E(errs.Unauthorized, "unknown tenant")
			}
			if t.Status != store.TenantActive {
				return errs.E(errs.Forbidden, "tenant disabled")
			}
			pid := r.Header.Get("X-Principal-Id")
			if pid == "" {
				pid = "usr_anonymous"
			}
			scopes := append(slices.Clone(auth.HeaderUserScopes), auth.ScopeRunsForward, auth.ScopeEventsIngest)
			if s := r.Header.Get("X-Scopes"); s != "" {
				scopes = strings.Fields(s)
			}
			roles := []string{auth.RoleTenantUser}
			if v := r.Header.Get("X-Roles"); v != "" {
				roles = strings.Fields(v)
			}
			ac := auth.Context{TenantID: tid, Principal: auth.Principal{PrincipalID: pid, PrincipalType: "user"},
				Scopes: scopes, Roles: roles}
			next.ServeHTTP(w, r.WithContext(auth.With(r.Context(), ac)))
			return nil
		})
	}
}
