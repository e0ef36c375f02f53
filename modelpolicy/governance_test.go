package modelpolicy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/internal/store/storetest"
	"github.com/nexixai/agentos/modelpolicy/providers"
	"github.com/nexixai/agentos/modelpolicy/providers/builtin"
)

// budgetCall is a chat call whose real usage is about 1,000 tokens (the
// builtin model echoes the ~2,000-character message) and whose estimate
// (the reservation) is a little more.
func budgetCall(tenantID string) map[string]any {
	body := chatBody(tenantID, "tier:fast", []map[string]any{user(strings.Repeat("lorem ipsum ", 170))}, nil)
	dig(body, "request").(map[string]any)["generation"] = map[string]any{"max_output_tokens": 600}
	return body
}

// hammer makes n concurrent budgetCalls spread over the bundles and
// returns the status counts and one quota_exceeded error's details.
func hammer(t *testing.T, bs []*bundle, tenantID string, n int) (map[int]int, map[string]any) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	var exceeded map[string]any
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := bs[i%len(bs)].do("POST", "/v1/models:invoke", tenantID, budgetCall(tenantID))
			mu.Lock()
			defer mu.Unlock()
			codes[r.status]++
			if r.status == 429 {
				require.Equal(t, "quota_exceeded", errCode(r))
				exceeded = dig(r.body, "error", "details").(map[string]any)
			}
		}()
	}
	wg.Wait()
	return codes, exceeded
}

// oneReservation is the estimate one budgetCall holds.
func oneReservation() int64 {
	return int64(4+(len([]rune(strings.Repeat("lorem ipsum ", 170)))+3)/4) + 600
}

// checkSettled checks the store after every server flushed: settled usage
// equals the ledger and stays within the budget plus one reservation.
func checkSettled(t *testing.T, db *sqlite.DB, tenantID string, budget int64, served int) {
	t.Helper()
	used, err := db.BudgetUsage(context.Background(), tenantID, "hour", windowStart(time.Now(), "hour"))
	require.NoError(t, err)
	require.LessOrEqual(t, used.UsedTokens, budget+oneReservation())
	recs, err := db.ListUsage(context.Background(), store.UsageFilter{TenantID: tenantID})
	require.NoError(t, err)
	require.Len(t, recs, served)
	var total int64
	for _, u := range recs {
		total += u.InputTokens + u.OutputTokens
	}
	require.Equal(t, total, used.UsedTokens, "settled usage equals the ledger")
}

func TestBudgetConcurrentCallersCannotOvershoot(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{mutate: func(c *Config) { c.DefaultInvokeQPS = -1 }})
	const budget = 10000
	b.addTenant(tenant("tnt_b", func(t *store.Tenant) {
		t.Quotas.Models.TokenBudget = store.TokenBudget{Window: "hour", MaxTokens: budget}
	}))
	codes, exceeded := hammer(t, []*bundle{b}, "tnt_b", 50)
	require.Greater(t, codes[200], 0)
	require.Greater(t, codes[429], 0)
	require.Equal(t, 50, codes[200]+codes[429], codes)
	require.Equal(t, "hour", exceeded["window"])
	require.EqualValues(t, budget, exceeded["limit"])
	require.Equal(t, "tokens", exceeded["resource"])
	require.NotNil(t, exceeded["used"])
	require.NoError(t, b.srv.Stop())
	checkSettled(t, b.db, "tnt_b", budget, codes[200])
}

func TestBudgetReplicasSharingAStoreCannotOvershoot(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	const budget = 10000
	var bs []*bundle
	for range 2 {
		cfg := Config{Store: db, Authenticate: testAuth, Registry: prometheus.NewRegistry(),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DefaultInvokeQPS: -1}
		s, err := New(cfg)
		require.NoError(t, err)
		require.NoError(t, s.Start())
		t.Cleanup(func() { _ = s.Stop() })
		ts := httptest.NewServer(s.Handler())
		t.Cleanup(ts.Close)
		bs = append(bs, &bundle{t: t, db: db, srv: s, url: ts.URL})
	}
	bs[0].addTenant(tenant("tnt_b", func(t *store.Tenant) {
		t.Quotas.Models.TokenBudget = store.TokenBudget{Window: "hour", MaxTokens: budget}
	}))
	codes, _ := hammer(t, bs, "tnt_b", 60)
	require.Greater(t, codes[200], 0)
	require.Greater(t, codes[429], 0)
	require.Equal(t, 60, codes[200]+codes[429], codes)
	for _, b := range bs {
		require.NoError(t, b.srv.Stop())
	}
	checkSettled(t, db, "tnt_b", budget, codes[200])
}

func TestBudgetSettledPeriodically(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{mutate: func(c *Config) { c.SettleInterval = 20 * time.Millisecond }})
	b.addTenant(tenant("tnt_p", func(t *store.Tenant) {
		t.Quotas.Models.TokenBudget = store.TokenBudget{Window: "hour", MaxTokens: 1000000}
	}))
	for range 3 {
		r := b.do("POST", "/v1/models:invoke", "tnt_p", chatBody("tnt_p", "tier:fast", []map[string]any{user("hi")}, nil))
		require.Equal(t, 200, r.status, string(r.raw))
	}
	require.NoError(t, b.srv.writer.Flush(context.Background()))
	recs, err := b.db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_p"})
	require.NoError(t, err)
	require.Len(t, recs, 3)
	var total int64
	for _, u := range recs {
		total += u.InputTokens + u.OutputTokens
	}
	// Without Flush or Stop, the leased chunk (20,000 tokens) is settled
	// back to the real usage by the periodic settlement.
	require.Eventually(t, func() bool {
		used, err := b.db.BudgetUsage(context.Background(), "tnt_p", "hour", windowStart(time.Now(), "hour"))
		return err == nil && used.UsedTokens == total
	}, 10*time.Second, 10*time.Millisecond)
}

// slowStore blocks ledger and audit writes until gate is closed.
type slowStore struct {
	*sqlite.DB
	gate   chan struct{}
	writes atomic.Int64
}

func (s *slowStore) RecordUsage(ctx context.Context, us ...store.UsageRecord) error {
	<-s.gate
	s.writes.Add(1)
	return s.DB.RecordUsage(ctx, us...)
}

func (s *slowStore) AppendAudits(ctx context.Context, rs []store.AuditRecord) ([]store.AuditRecord, error) {
	<-s.gate
	s.writes.Add(1)
	return s.DB.AppendAudits(ctx, rs)
}

func TestCallsDoNotWaitForLedgerOrAuditWrites(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	slow := &slowStore{DB: db, gate: make(chan struct{})}
	s, err := New(Config{Store: slow, Authenticate: testAuth, Registry: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Stop() })
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	b := &bundle{t: t, db: db, srv: s, url: ts.URL}
	b.addTenant(tenant("tnt_a"))

	// Calls complete while every ledger and audit write is blocked.
	done := make(chan int, 1)
	go func() {
		status := 0
		for range 3 {
			status = b.do("POST", "/v1/chat/completions", "tnt_a", map[string]any{"model": "tier:fast",
				"messages": []any{map[string]any{"role": "user", "content": "hi"}}}).status
		}
		done <- status
	}()
	select {
	case status := <-done:
		require.Equal(t, 200, status)
	case <-time.After(30 * time.Second):
		t.Fatal("calls waited for blocked ledger/audit writes")
	}
	require.Zero(t, slow.writes.Load(), "nothing could be written yet")

	// Stop writes everything once the store answers again.
	close(slow.gate)
	require.NoError(t, s.Stop())
	recs, err := db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, recs, 3)
	aud, err := db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, aud, 3)
	require.Equal(t, "model.chat_completions", aud[0].Action)
	// A record arriving after Stop is still written (synchronously).
	s.writer.Audit(store.AuditRecord{AuditID: "aud_late", TenantID: "tnt_a", Action: "model.late", Time: time.Now().UTC()})
	aud, err = db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, aud, 4)
}

// failingUsage fails the first n RecordUsage calls.
type failingUsage struct {
	*sqlite.DB
	fails atomic.Int64
}

func (f *failingUsage) RecordUsage(ctx context.Context, us ...store.UsageRecord) error {
	if f.fails.Add(-1) >= 0 {
		return context.DeadlineExceeded
	}
	return f.DB.RecordUsage(ctx, us...)
}

func TestLedgerWriteFailuresAreRetried(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	fs := &failingUsage{DB: db}
	fs.fails.Store(2)
	s, err := New(Config{Store: fs, Authenticate: testAuth, Registry: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Stop() })
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	b := &bundle{t: t, db: db, srv: s, url: ts.URL}
	b.addTenant(tenant("tnt_a"))
	require.Equal(t, 200, b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user("x")}, nil)).status)
	require.NoError(t, s.Stop())
	recs, err := db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
}

// TestWriterBatchesAndIsolatesABadRecord drives the record writer alone:
// a batch is written with one call per kind; a record the store refuses
// (invalid) costs only itself, not its batch; a batch whose first commit
// lost its acknowledgement is not counted as failed; and with the store
// down a batch is given up after its retries (logged and counted), not
// retried record by record.
func TestWriterBatchesAndIsolatesABadRecord(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	var usageCalls, lostAcks, down atomic.Int64
	usage := func(ctx context.Context, us ...store.UsageRecord) error {
		usageCalls.Add(1)
		if down.Load() > 0 {
			return errs.E(errs.DependencyUnavailable, "store down")
		}
		for _, u := range us {
			if u.UsageID == "usg_bad" {
				return errs.Field("operation", "refused")
			}
		}
		if err := db.RecordUsage(ctx, us...); err != nil {
			return err
		}
		if lostAcks.Add(-1) >= 0 {
			return errs.E(errs.DependencyUnavailable, "connection lost during commit")
		}
		return nil
	}
	var failed, auditFailed atomic.Int64
	w := newRecordWriter(usage, AuditLogRecorder{Log: db}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(audit bool) {
			failed.Add(1)
			if audit {
				auditFailed.Add(1)
			}
		}, time.Hour) // only the full batch or Flush writes
	w.start()
	rec := func(id string) store.UsageRecord {
		return store.UsageRecord{UsageID: id, TenantID: "tnt_a", PrincipalID: "usr_a", ModelID: "m", Backend: "builtin",
			Operation: "chat", InputTokens: 1, OutputTokens: 1}
	}
	stored := func() int {
		recs, err := db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_a"})
		require.NoError(t, err)
		return len(recs)
	}
	for i := range 5 {
		w.Usage(rec(fmt.Sprintf("usg_%d", i)))
		w.Audit(store.AuditRecord{TenantID: "tnt_a", Action: "model.invoke", Target: fmt.Sprint(i)})
	}
	require.NoError(t, w.Flush(context.Background()))
	require.EqualValues(t, 1, usageCalls.Load(), "one store call for the batch")
	aud, err := db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, aud, 5)
	storetest.VerifyChain(t, aud)

	w.Usage(rec("usg_5"))
	w.Usage(rec("usg_bad"))
	w.Usage(rec("usg_6"))
	require.NoError(t, w.Flush(context.Background()))
	require.Equal(t, 7, stored(), "everything but usg_bad")
	require.EqualValues(t, 1, failed.Load())

	lostAcks.Store(1)
	w.Usage(rec("usg_7"))
	w.Usage(rec("usg_8"))
	require.NoError(t, w.Flush(context.Background()))
	require.Equal(t, 9, stored(), "stored once")
	require.EqualValues(t, 1, failed.Load(), "a lost acknowledgement is not a failure")

	down.Store(1)
	usageCalls.Store(0)
	w.Usage(rec("usg_9"))
	w.Usage(rec("usg_10"))
	w.Close()
	require.EqualValues(t, writerAttempts, usageCalls.Load(), "the batch's retries, not one call per record")
	require.EqualValues(t, 3, failed.Load(), "both records counted")
	require.Zero(t, auditFailed.Load())
}

// countingTenants counts store reads of tenants.
type countingTenants struct {
	*sqlite.DB
	reads atomic.Int64
}

func (c *countingTenants) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	c.reads.Add(1)
	return c.DB.GetTenant(ctx, id)
}

func TestTenantCache(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ct := &countingTenants{DB: db}
	require.NoError(t, db.CreateTenant(context.Background(), tenant("tnt_a")))
	c := NewTenantCache(ct, time.Hour)
	for range 5 {
		got, err := c.GetTenant(context.Background(), "tnt_a")
		require.NoError(t, err)
		require.Equal(t, "tnt_a", got.TenantID)
	}
	require.EqualValues(t, 1, ct.reads.Load(), "one store read within the TTL")
	for range 2 {
		_, err := c.GetTenant(context.Background(), "tnt_nope")
		require.ErrorIs(t, err, errs.ErrNotFound)
	}
	require.EqualValues(t, 2, ct.reads.Load(), "unknown tenants are cached too")
	c.Invalidate("tnt_a")
	_, err := c.GetTenant(context.Background(), "tnt_a")
	require.NoError(t, err)
	require.EqualValues(t, 3, ct.reads.Load())
}

func TestDisabledTenantRefusedWithinTTL(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{mutate: func(c *Config) { c.TenantTTL = 50 * time.Millisecond }})
	tn := tenant("tnt_a")
	b.addTenant(tn)
	require.Equal(t, 200, b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user("x")}, nil)).status)
	tn.Status = store.TenantDisabled
	require.NoError(t, b.db.UpdateTenant(context.Background(), tn, time.Time{}))
	require.Eventually(t, func() bool {
		r := b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user("x")}, nil))
		return r.status == 403 && errCode(r) == "forbidden"
	}, 10*time.Second, 10*time.Millisecond)
}

func TestTraceparentReachesBackendThroughGateway(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var calls int
	seen := make(chan string, 4)
	backend := flakyOpenAI(t, 200, &calls, &mu)
	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("traceparent")
		backend.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(spy.Close)
	cat, err := ParseCatalogue([]byte(`
backends:
  - {name: vllm, type: openai, base_url: "` + spy.URL + `/v1"}
models:
  - {name: llama, backend: vllm, tiers: [fast]}
`))
	require.NoError(t, err)
	b := setup(t, setupOpts{cat: cat})
	b.addTenant(tenant("tnt_a"))
	r := b.do("POST", "/v1/chat/completions", "tnt_a", map[string]any{"model": "tier:fast",
		"messages": []any{map[string]any{"role": "user", "content": "hi"}}},
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	require.Equal(t, 200, r.status, string(r.raw))
	tp := <-seen
	require.Regexp(t, `^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$`, tp)
	require.NotContains(t, tp, "b7ad6b7169203331", "the backend call is a child span")
}

// A prompt with an email, a Luhn-valid card number and a US SSN reaches an
// OpenAI-compatible backend redacted under the default policy, and not at
// all under the strict one (it blocks SSNs): shown by the bodies the
// backend received on the wire.
func TestPIIRedactedOrBlockedBeforeTheBackend(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var calls int
	bodies := make(chan string, 8)
	backend := flakyOpenAI(t, 200, &calls, &mu)
	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		backend.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(spy.Close)
	cat, err := ParseCatalogue([]byte(`
backends:
  - {name: vllm, type: openai, base_url: "` + spy.URL + `/v1"}
models:
  - {name: llama, backend: vllm, tiers: [fast]}
`))
	require.NoError(t, err)
	b := setup(t, setupOpts{cat: cat})
	b.addTenant(tenant("tnt_a"))
	b.addTenant(tenant("tnt_strict", func(t *store.Tenant) { t.DefaultPolicyID = "pol_strict" }))
	prompt := "I am jane.doe@example.com, card 4111 1111 1111 1111, SSN 123-45-6789"
	msgs := []any{map[string]any{"role": "user", "content": prompt}}

	r := b.do("POST", "/v1/chat/completions", "tnt_a", map[string]any{"model": "tier:fast", "messages": msgs})
	require.Equal(t, 200, r.status, string(r.raw))
	sent := <-bodies
	for _, pii := range []string{"jane.doe@example.com", "4111 1111 1111 1111", "123-45-6789"} {
		require.NotContains(t, sent, pii)
	}
	for _, mark := range []string{"[REDACTED:email]", "[REDACTED:credit_card]", "[REDACTED:ssn]"} {
		require.Contains(t, sent, mark)
	}

	r = b.do("POST", "/v1/chat/completions", "tnt_strict", map[string]any{"model": "tier:fast", "messages": msgs})
	require.Equal(t, 403, r.status, string(r.raw))
	require.Equal(t, "policy_blocked", errCode(r))
	select {
	case body := <-bodies:
		t.Fatalf("a blocked prompt reached the backend: %s", body)
	default:
	}
}

// streamThenFail streams a few fragments, then fails as a backend that
// drops the connection would.
type streamThenFail struct{ *builtin.Provider }

func (p streamThenFail) ChatStream(ctx context.Context, req providers.ChatRequest, onDelta func(providers.Delta) error) (providers.ChatResponse, error) {
	for range 3 {
		if err := onDelta(providers.Delta{Content: "twenty characters!! "}); err != nil {
			return providers.ChatResponse{}, err
		}
	}
	return providers.ChatResponse{}, errs.E(errs.DependencyUnavailable, "backend connection reset")
}

// A call that fails after the backend streamed content is charged (budget
// and ledger) for what it used; it is not free.
func TestFailedStreamIsCharged(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{mutate: func(c *Config) {
		c.Providers = map[string]providers.Provider{"builtin": streamThenFail{builtin.New(0)}}
	}})
	b.addTenant(tenant("tnt_s", func(t *store.Tenant) {
		t.DefaultPolicyID = "pol_permissive"
		t.Quotas.Models.TokenBudget = store.TokenBudget{MaxTokens: 100000, Window: "day"}
	}))
	req, err := http.NewRequest("POST", b.url+"/v1/chat/completions", strings.NewReader(
		`{"model":"tier:fast","stream":true,"messages":[{"role":"user","content":"tell me a long story"}]}`))
	require.NoError(t, err)
	req.Header.Set("X-Test-Tenant", "tnt_s")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), "twenty characters", "content was streamed before the failure")
	b.flush()
	recs, err := b.db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_s"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.EqualValues(t, 15, recs[0].OutputTokens, "60 characters streamed")
	require.Positive(t, recs[0].InputTokens)
	used, err := b.db.BudgetUsage(context.Background(), "tnt_s", "day", windowStart(time.Now(), "day"))
	require.NoError(t, err)
	require.EqualValues(t, recs[0].InputTokens+recs[0].OutputTokens, used.UsedTokens)
}
