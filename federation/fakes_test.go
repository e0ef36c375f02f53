package federation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// newNodeStore is a node's real store (SQLite in a temporary directory,
// the adapter the node runs by default) holding tenants: the federation
// tests run against the store the conformance suite holds to the port, not
// a fake of it.
func newNodeStore(t *testing.T, tenants ...store.Tenant) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "agentos.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	for _, tn := range tenants {
		require.NoError(t, db.CreateTenant(context.Background(), tn))
	}
	return db
}

// updateTenant applies change to a stored tenant.
func updateTenant(t *testing.T, db *sqlite.DB, id string, change func(*store.Tenant)) {
	t.Helper()
	tn, err := db.GetTenant(context.Background(), id)
	require.NoError(t, err)
	change(&tn)
	require.NoError(t, db.UpdateTenant(context.Background(), tn, tn.UpdatedAt))
}

// ingestedIDs lists the event ids stored for a run of a tenant, ingested
// from source ("" any source).
func ingestedIDs(t *testing.T, db *sqlite.DB, tenantID, runID, source string) []string {
	t.Helper()
	evs, err := db.ListIngestedEvents(context.Background(), tenantID, runID, source)
	require.NoError(t, err)
	ids := []string{}
	for _, e := range evs {
		ids = append(ids, e.EventID)
	}
	return ids
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
func headerAuth(st Store) func(http.Handler) http.Handler {
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
