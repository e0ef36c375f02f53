package agentorchestrator

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/bus/inproc"
	natsbus "github.com/nexixai/agentos/internal/bus/nats"
	"github.com/nexixai/agentos/internal/bus/nats/natstest"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/events"
	queuepg "github.com/nexixai/agentos/internal/queue/postgres"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres"
	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/internal/store/storecache"
	"github.com/nexixai/agentos/internal/tenancy"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
)

// replica is one orchestrator process of a replicated control plane: its
// own store connections, bus connection and HTTP server.
type replica struct {
	db   *postgres.DB
	srv  *Server
	http *httptest.Server
}

// newReplica starts an orchestrator on the PostgreSQL schema at pgURL and
// the NATS server at natsURL. Its polls are an hour long, so that what it
// learns from other replicas within a test came over the bus: the store
// poll of its SSE streams, its scheduler's poll and its executors' cancel
// check. natsURL "" gives it an in-process bus of its own and the default
// store poll (2 s), as replicas had before the bus. execute false leaves its scheduler (and signal loop) stopped: an
// API-only replica, so that runs execute on the other.
func newReplica(t testing.TB, name, pgURL, natsURL string, execute bool, extra ...tools.Tool) *replica {
	t.Helper()
	return newCachedReplica(t, name, pgURL, natsURL, execute, 0, extra...)
}

// newCachedReplica is newReplica whose tenants, agents and tokens are
// read through storecache with cacheTTL, as the node reads them (0: no
// cache).
func newCachedReplica(t testing.TB, name, pgURL, natsURL string, execute bool, cacheTTL time.Duration, extra ...tools.Tool) *replica {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, pgURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	// Without NATS each replica has its own in-process bus: streams learn
	// of other replicas' events by the store poll alone (its default).
	var b bus.Bus = inproc.New(inproc.Config{History: db})
	storePoll := time.Duration(0)
	if natsURL != "" {
		nb, err := natsbus.Dial(ctx, natsbus.Config{URL: natsURL, Name: name, History: db})
		require.NoError(t, err)
		b, storePoll = nb, time.Hour
	}
	t.Cleanup(func() { _ = b.Close() })

	cfg, err := config.Load(func(string) (string, bool) { return "", false }, filepath.Join(t.TempDir(), "none.env"))
	require.NoError(t, err)
	cfg.Home = t.TempDir()
	require.NoError(t, cfg.Finish())
	reg := tools.NewRegistry()
	require.NoError(t, builtin.Register(reg, builtin.Deps{KV: db}))
	for _, tl := range extra {
		require.NoError(t, reg.Register(tl))
	}
	var st store.Store = db
	if cacheTTL > 0 {
		st = storecache.New(db, cacheTTL)
	}
	authn, err := auth.New(auth.Config{Mode: config.ModeDemo, Tenants: st, Tokens: st})
	require.NoError(t, err)
	srv, err := New(Config{Store: st, Queue: queuepg.New(db), Bus: b, StorePoll: storePoll, Authenticate: authn.Middleware,
		Audit: audit.New(db, nil), Limiter: tenancy.NewLimiter(), Model: &scriptedModel{}, Tools: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)).With("replica", name), Node: cfg, Executors: 4,
		PollInterval: time.Hour})
	require.NoError(t, err)
	srv.cancelCheck = time.Hour
	if execute {
		require.NoError(t, srv.Start(ctx))
	}
	r := &replica{db: db, srv: srv, http: httptest.NewServer(srv.Handler())}
	t.Cleanup(func() {
		r.http.CloseClientConnections()
		r.http.Close()
		srv.Stop()
	})
	return r
}

// seedReplicas creates the tenant and its agents: agt_echo and one agent
// per extra tool.
func seedReplicas(t testing.TB, db store.Store, extra ...tools.Tool) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Load(func(string) (string, bool) { return "", false }, filepath.Join(t.TempDir(), "none.env"))
	require.NoError(t, err)
	cfg.QuotaRunCreateQPS = 1000 // the benchmark creates runs back to back
	require.NoError(t, db.CreateTenant(ctx, tenancy.NewTenant("tnt_a", "tnt_a", cfg)))
	agents := map[string]string{"agt_echo": "tool.echo"}
	for _, tl := range extra {
		agents["agt_"+tl.Spec().ToolID] = tl.Spec().ToolID
	}
	for id, tool := range agents {
		require.NoError(t, db.PutAgent(ctx, store.Agent{AgentID: id, TenantID: "tnt_a", Name: id, Version: 1,
			Status: store.AgentActive, ModelRef: "tier:fast", Instructions: "echo", Tools: []string{tool},
			Defaults: store.AgentDefaults{MaxSteps: 4, TimeoutMs: 60000}, CreatedAt: time.Now(), UpdatedAt: time.Now()}))
	}
}

// bundle gives the replica the test helpers of setup's bundles.
func (r *replica) bundle(t testing.TB) *testBundle {
	return &testBundle{t: t, srv: r.srv, http: r.http}
}

// openStream opens a run's SSE stream. The orchestrator subscribes to the
// bus before it sends the headers, so once this returns every event
// committed later reaches the stream.
func (r *replica) openStream(ctx context.Context, t testing.TB, runID string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", r.http.URL+"/v1/runs/"+runID+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_a")
	resp, err := r.http.Client().Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return resp
}

func readStream(t testing.TB, resp *http.Response) []store.Event {
	t.Helper()
	defer resp.Body.Close()
	var evs []store.Event
	require.NoError(t, events.ReadSSE(resp.Body, func(f events.Frame) error {
		e, err := events.DecodeFrame(f)
		require.NoError(t, err)
		evs = append(evs, e)
		return nil
	}))
	return evs
}

// requireOneTerminal checks a whole stream: sequences 1..N without gap or
// duplicate, and one terminal event, of type last, at the end.
func requireOneTerminal(t *testing.T, evs []store.Event, last string) {
	t.Helper()
	require.NotEmpty(t, evs)
	requireGapless(t, evs, 1)
	for _, e := range evs[:len(evs)-1] {
		require.False(t, store.IsTerminalEvent(e.Type), "one terminal event, last: %v", eventTypes(evs))
	}
	require.Equal(t, last, evs[len(evs)-1].Type, eventTypes(evs))
}

// Two orchestrator replicas on one PostgreSQL store and one NATS server:
// replica 1 executes runs, replica 2 only serves the API. With every poll
// an hour long, a run admitted on replica 2 starts on replica 1 (wake
// signal), its events stream live from replica 2 (events on the bus), and
// a cancel through replica 2 stops replica 1's executor (cancel signal).
func TestReplicasShareLiveStateOverTheBus(t *testing.T) {
	pgURL := pgtest.URL(t)
	nats := natstest.Start(t, natstest.Options{})
	tool := newBlockingTool("tool.test.block", false)
	r1 := newReplica(t, "replica-1", pgURL, nats.URL(), true, tool)
	r2 := newReplica(t, "replica-2", pgURL, nats.URL(), false, tool)
	seedReplicas(t, r1.db, tool)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("admission on replica 2 wakes replica 1", func(t *testing.T) {
		runID := r2.bundle(t).createRun("tnt_a", "agt_echo", map[string]any{"input": "wake up"})
		requireOneTerminal(t, readStream(t, r2.openStream(ctx, t, runID)), store.EventRunCompleted)
		run, err := r1.db.GetRun(ctx, "tnt_a", runID)
		require.NoError(t, err)
		require.Equal(t, store.RunCompleted, run.Status)
	})

	t.Run("events of a run on replica 1 stream live from replica 2", func(t *testing.T) {
		runID := r1.bundle(t).createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "stream me elsewhere"})
		<-tool.started
		resp := r2.openStream(ctx, t, runID)
		tool.release <- struct{}{}
		requireOneTerminal(t, readStream(t, resp), store.EventRunCompleted)
	})

	t.Run("cancel through replica 2 stops the executor on replica 1", func(t *testing.T) {
		runID := r1.bundle(t).createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "cancel me elsewhere"})
		<-tool.started
		resp := r2.openStream(ctx, t, runID)
		out, body := r2.bundle(t).do("POST", "/v1/runs/"+runID+":cancel", "tnt_a", `{"reason":"from replica 2"}`)
		require.Equal(t, http.StatusOK, out.StatusCode, body)
		require.Eventually(t, func() bool { return tool.ctxErr.Load() != nil }, 30*time.Second, 10*time.Millisecond,
			"the in-flight tool call on replica 1 is canceled")
		require.ErrorIs(t, *tool.ctxErr.Load(), context.Canceled)
		requireOneTerminal(t, readStream(t, resp), store.EventRunCanceled)
		// The executor stopped without writing over the cancel: the run
		// reads canceled from either replica.
		run, err := r1.db.GetRun(ctx, "tnt_a", runID)
		require.NoError(t, err)
		require.Equal(t, store.RunCanceled, run.Status)
	})
}

// A thousand SSE streams on one replica cost one NATS consumer (the
// replica's fan-out), not a thousand, and every stream gets its run's
// events 1..N with one terminal event. Runs execute on replica 1, the
// streams are open on replica 2 (its store poll an hour long: what they
// get came over the bus).
func TestThousandStreamsShareOneConsumer(t *testing.T) {
	pgURL := pgtest.URL(t)
	nats := natstest.Start(t, natstest.Options{})
	tool := newBlockingTool("tool.test.block", false)
	r1 := newReplica(t, "replica-1", pgURL, nats.URL(), true, tool)
	r2 := newReplica(t, "replica-2", pgURL, nats.URL(), false, tool)
	seedReplicas(t, r1.db, tool)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ten, err := r1.db.GetTenant(ctx, "tnt_a")
	require.NoError(t, err)
	ten.Quotas.Runs.MaxConcurrentStreams = 2000
	require.NoError(t, r1.db.UpdateTenant(ctx, ten, ten.UpdatedAt))

	const runs, perRun = 4, 250 // 4: replica 1's executors, each run held in its tool
	var ids []string
	for range runs {
		ids = append(ids, r1.bundle(t).createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "fan me out"}))
		<-tool.started
	}
	var streams []*http.Response
	for i := range runs * perRun {
		streams = append(streams, r2.openStream(ctx, t, ids[i%runs]))
	}
	js, err := jetstream.New(natsConn(t, nats.URL()))
	require.NoError(t, err)
	st, err := js.Stream(ctx, "AGENTOS_EVENTS")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, info.State.Consumers, "one consumer per replica for %d streams", len(streams))

	got := make([][]store.Event, len(streams))
	var wg sync.WaitGroup
	for i, resp := range streams {
		wg.Go(func() { got[i] = readStream(t, resp) })
	}
	for range runs {
		tool.release <- struct{}{}
	}
	wg.Wait()
	for i, evs := range got {
		require.Equalf(t, ids[i%runs], evs[0].RunID, "stream %d", i)
		requireOneTerminal(t, evs, store.EventRunCompleted)
	}
}

func natsConn(t *testing.T, url string) *natsio.Conn {
	t.Helper()
	nc, err := natsio.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// A tenant disabled, a token revoked or an agent deactivated through
// replica A is refused by replica B as soon as A's invalidation signal
// arrives, although B cached them (TTL an hour: only the signal explains
// B seeing the change); re-enabling the tenant on A is admitted on B.
func TestCacheInvalidationCrossesReplicas(t *testing.T) {
	require.Equal(t, bus.EntityTenant, storecache.EntityTenant)
	require.Equal(t, bus.EntityAgent, storecache.EntityAgent)
	require.Equal(t, bus.EntityToken, storecache.EntityToken)
	pgURL := pgtest.URL(t)
	nats := natstest.Start(t, natstest.Options{})
	a := newCachedReplica(t, "replica-a", pgURL, nats.URL(), true, time.Hour)
	b := newCachedReplica(t, "replica-b", pgURL, nats.URL(), true, time.Hour)
	seedReplicas(t, a.db)
	ctx := context.Background()
	issue := func(roles ...string) (string, string) {
		tok, secret, err := auth.IssueToken(ctx, a.db, auth.IssueParams{TenantID: "tnt_a", PrincipalID: "usr_" + roles[0],
			Scopes: auth.AllScopes, Roles: roles})
		require.NoError(t, err)
		return tok.TokenID, "Bearer " + secret
	}
	_, admin := issue(auth.RolePlatformAdmin)
	userID, user := issue(auth.RoleTenantUser)
	create := func(r *replica) int {
		resp, _ := r.bundle(t).do("POST", "/v1/agents/agt_echo/runs", "", `{"input":"hi"}`, "Authorization", user)
		return resp.StatusCode
	}
	patch := func(status string) {
		resp, out := a.bundle(t).do("PATCH", "/v1/admin/tenants/tnt_a", "", map[string]any{"status": status}, "Authorization", admin)
		require.Equal(t, http.StatusOK, resp.StatusCode, out)
	}
	// B caches the tenant, the agent and the user's token.
	require.Equal(t, http.StatusCreated, create(b))
	eventually := func(what string, f func() bool) {
		t.Helper()
		require.Eventually(t, f, 20*time.Second, 10*time.Millisecond, what)
	}

	patch("disabled")
	eventually("B refuses the tenant disabled on A", func() bool { return create(b) == http.StatusForbidden })
	patch("active")
	eventually("B admits the tenant re-enabled on A", func() bool { return create(b) == http.StatusCreated })

	ag, err := a.srv.cfg.Store.GetAgent(ctx, "tnt_a", "agt_echo")
	require.NoError(t, err)
	ag.Status = store.AgentInactive
	require.NoError(t, a.srv.cfg.Store.PutAgent(ctx, ag))
	eventually("B refuses the agent deactivated on A", func() bool { return create(b) == http.StatusConflict })
	ag.Status = store.AgentActive
	require.NoError(t, a.srv.cfg.Store.PutAgent(ctx, ag))
	eventually("B admits the agent reactivated on A", func() bool { return create(b) == http.StatusCreated })

	resp, out := a.bundle(t).do("DELETE", "/v1/admin/tenants/tnt_a/tokens/"+userID, "", nil, "Authorization", admin)
	require.Less(t, resp.StatusCode, 300, out)
	eventually("B refuses the token revoked on A", func() bool { return create(b) == http.StatusUnauthorized })
}

// droppingBus is the in-process bus whose first live (not resumed) event
// subscription comes back already dropped, as when a subscriber lagged or
// its NATS server died: the stream must resume from the bus.
type droppingBus struct {
	*inproc.Bus
	dropped atomic.Bool
	resumes atomic.Int64
}

func (d *droppingBus) Subscribe(ctx context.Context, p bus.SubscribeParams) (bus.Subscription[store.Event], error) {
	if p.Resume {
		d.resumes.Add(1)
	} else if d.dropped.CompareAndSwap(false, true) {
		s := bus.NewSink[store.Event](1, nil)
		s.Drop()
		return s, nil
	}
	return d.Bus.Subscribe(ctx, p)
}

// An SSE stream whose subscription is dropped resumes after the last event
// it wrote, from the bus (the store poll is an hour long): every later
// event arrives once, in order, and the stream ends at the terminal event.
func TestStreamResumesADroppedSubscription(t *testing.T) {
	t.Parallel()
	tool := newBlockingTool("tool.test.block", false)
	var db *droppingBus
	b := setup(t, bundleOpts{extra: []tools.Tool{tool}, storePoll: time.Hour, bus: func(st store.Store) bus.Bus {
		db = &droppingBus{Bus: inproc.New(inproc.Config{History: st})}
		return db
	}})
	runID := b.createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "resume me"})
	<-tool.started
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp := (&replica{srv: b.srv, http: b.http}).openStream(ctx, t, runID)
	tool.release <- struct{}{}
	requireOneTerminal(t, readStream(t, resp), store.EventRunCompleted)
	require.True(t, db.dropped.Load())
	require.EqualValues(t, 1, db.resumes.Load(), "the stream resumed once")
}

// BenchmarkCrossReplicaEvent measures how long an event committed by an
// executor on replica 1 takes to reach an SSE stream open on replica 2,
// two replicas on one PostgreSQL store: over NATS ("bus"), and with an
// in-process bus each, by the stream's store poll ("store-poll", the
// fallback and the behaviour before the bus). One op: a run blocked in a
// tool is released and its next event (the tool step) is read on replica 2.
//
//	eval "$(scripts/pg-test-cluster.sh start)"
//	go test -run '^$' -bench CrossReplicaEvent ./agentorchestrator/
func BenchmarkCrossReplicaEvent(b *testing.B) {
	for _, mode := range []string{"bus", "store-poll"} {
		b.Run(mode, func(b *testing.B) {
			pgURL := pgtest.URL(b)
			natsURL := ""
			if mode == "bus" {
				natsURL = natstest.Start(b, natstest.Options{}).URL()
			}
			tool := newBlockingTool("tool.test.block", false)
			r1 := newReplica(b, "replica-1", pgURL, natsURL, true, tool)
			r2 := newReplica(b, "replica-2", pgURL, natsURL, false, tool)
			seedReplicas(b, r1.db, tool)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				runID := r1.bundle(b).createRun("tnt_a", "agt_tool.test.block", map[string]any{"input": "bench"})
				<-tool.started
				stored, err := r1.db.ListEvents(ctx, store.ListEventsParams{TenantID: "tnt_a", RunID: runID, Limit: 1000})
				require.NoError(b, err)
				seqs := make(chan int64, 64)
				resp := r2.openStream(ctx, b, runID)
				go func() {
					defer close(seqs)
					defer resp.Body.Close()
					_ = events.ReadSSE(resp.Body, func(f events.Frame) error {
						e, err := events.DecodeFrame(f)
						if err == nil {
							seqs <- e.Sequence
						}
						return err
					})
				}()
				for seq := range seqs {
					if seq == stored[len(stored)-1].Sequence {
						break // caught up: the stream is live
					}
				}
				b.StartTimer()
				tool.release <- struct{}{}
				next, ok := <-seqs
				b.StopTimer()
				require.True(b, ok, "the stream ended before the next event")
				require.Greater(b, next, stored[len(stored)-1].Sequence)
				for range seqs {
				}
				b.StartTimer()
			}
		})
	}
}

// publishLog is the in-process bus recording what is published and the
// errors the bus returns.
type publishLog struct {
	*inproc.Bus
	mu   sync.Mutex
	evs  []store.Event
	errs []error
}

func (p *publishLog) Publish(ctx context.Context, evs ...store.Event) error {
	err := p.Bus.Publish(ctx, evs...)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evs = append(p.evs, evs...)
	if err != nil {
		p.errs = append(p.errs, err)
	}
	return err
}

// run.created goes on the bus numbered as the store wrote it (sequence
// 1): unnumbered, the bus refused it, and a stream on another replica saw
// it only at its store poll.
func TestRunCreatedIsPublishedAsSequenceOne(t *testing.T) {
	t.Parallel()
	var pl *publishLog
	b := setup(t, bundleOpts{bus: func(st store.Store) bus.Bus {
		pl = &publishLog{Bus: inproc.New(inproc.Config{History: st})}
		return pl
	}})
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "numbered"})
	pl.mu.Lock()
	defer pl.mu.Unlock()
	require.Empty(t, pl.errs)
	require.NotEmpty(t, pl.evs)
	require.Equal(t, runID, pl.evs[0].RunID)
	require.Equal(t, store.EventRunCreated, pl.evs[0].Type)
	require.Equal(t, int64(1), pl.evs[0].Sequence)
}
