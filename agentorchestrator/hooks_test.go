package agentorchestrator

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/stdwebhook"
	"github.com/nexixai/agentos/internal/store"
)

// receiver is a webhook endpoint that answers 500 to the first failFirst
// requests and 204 after, keeping every request.
type receiver struct {
	mu        sync.Mutex
	failFirst int
	got       []receivedHook
	srv       *httptest.Server
}

type receivedHook struct {
	header http.Header
	body   []byte
	status int
}

func newReceiver(t *testing.T, failFirst int) *receiver {
	rc := &receiver{failFirst: failFirst}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		status := http.StatusNoContent
		if len(rc.got) < rc.failFirst {
			status = http.StatusInternalServerError
		}
		rc.got = append(rc.got, receivedHook{header: r.Header.Clone(), body: body, status: status})
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []receivedHook {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receivedHook(nil), rc.got...)
}

func hookOpts(allow string) bundleOpts {
	return bundleOpts{cfgFn: func(c *config.Config) {
		c.WebhookAllow = allow
		c.WebhookRetryBase = 20 * time.Millisecond
	}}
}

func TestRunWebhookRetriedUntilDeliveredSigned(t *testing.T) {
	t.Parallel()
	b := setup(t, hookOpts("127.0.0.1"))
	rc := newReceiver(t, 2)
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "hi",
		"webhook": map[string]any{"url": rc.srv.URL + "/hook", "events": []string{"terminal"}}})
	b.waitStatus("tnt_a", runID, store.RunCompleted)
	require.Eventually(t, func() bool { return len(rc.requests()) >= 3 }, 20*time.Second, 10*time.Millisecond)

	sec, err := b.db.EnsureWebhookSecret(context.Background(), store.WebhookSecret{TenantID: "tnt_a", Secret: "whsec_unused", CreatedAt: time.Now()})
	require.NoError(t, err)
	require.NotEqual(t, "whsec_unused", sec.Secret, "the dispatcher made the tenant's secret")
	reqs := rc.requests()
	require.Len(t, reqs, 3, "delivered on the third attempt, then no more")
	id := reqs[0].header.Get(stdwebhook.HeaderID)
	for _, h := range reqs {
		require.Equal(t, id, h.header.Get(stdwebhook.HeaderID), "webhook-id is the same on every retry")
		require.NoError(t, stdwebhook.Verify(h.header, h.body, sec.Secret, time.Now(), 5*time.Minute))
		require.Contains(t, string(h.body), `"type":"agentos.run.completed"`)
	}

	require.Eventually(t, func() bool {
		resp, out := b.do("GET", "/v1/runs/"+runID+"/webhook-deliveries", "tnt_a", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		ds := out["deliveries"].([]any)
		return len(ds) == 1 && ds[0].(map[string]any)["status"] == store.DeliverySucceeded
	}, 10*time.Second, 10*time.Millisecond)
	_, out := b.do("GET", "/v1/runs/"+runID+"/webhook-deliveries", "tnt_a", nil)
	d := out["deliveries"].([]any)[0].(map[string]any)
	require.Equal(t, id, d["delivery_id"])
	require.Nil(t, d["next_attempt_at"])
	var codes []float64
	for _, a := range d["attempts"].([]any) {
		codes = append(codes, a.(map[string]any)["status_code"].(float64))
	}
	require.Equal(t, []float64{500, 500, 204}, codes)

	resp, _ := b.do("GET", "/v1/runs/"+runID+"/webhook-deliveries", "tnt_b", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "another tenant's run")
}

// The fetch tool's allow-list does not open webhooks: a loopback receiver
// is refused by the SSRF guard and the delivery fails at once.
func TestRunWebhookSSRFGuardHasItsOwnAllowList(t *testing.T) {
	t.Parallel()
	o := hookOpts("")
	o.fetchAllow = "127.0.0.1"
	b := setup(t, o)
	rc := newReceiver(t, 0)
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "hi",
		"webhook": map[string]any{"url": rc.srv.URL, "events": []string{"all"}}})
	b.waitStatus("tnt_a", runID, store.RunCompleted)
	require.Eventually(t, func() bool {
		ds, err := b.db.ListWebhookDeliveries(context.Background(), "tnt_a", runID)
		require.NoError(t, err)
		if len(ds) < 2 {
			return false
		}
		for _, d := range ds {
			if d.Status != store.DeliveryFailed {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond)
	ds, err := b.db.ListWebhookDeliveries(context.Background(), "tnt_a", runID)
	require.NoError(t, err)
	require.Len(t, ds[0].Attempts, 1)
	require.Contains(t, ds[0].Attempts[0].Error, "127.0.0.1")
	require.Empty(t, rc.requests())
}

func TestRunWebhookValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, hookOpts(""))
	for name, tc := range map[string]struct {
		hook  any
		field string
	}{
		"no url":         {map[string]any{"events": []string{"all"}}, "webhook.url"},
		"relative url":   {map[string]any{"url": "/hook"}, "webhook.url"},
		"ftp url":        {map[string]any{"url": "ftp://example.com/x"}, "webhook.url"},
		"credentials":    {map[string]any{"url": "https://u:p@example.com/x"}, "webhook.url"},
		"unknown events": {map[string]any{"url": "https://example.com", "events": []string{"some"}}, "webhook.events"},
		"two filters":    {map[string]any{"url": "https://example.com", "events": []string{"all", "terminal"}}, "webhook.events"},
		"not an object":  {"https://example.com", "webhook"},
	} {
		resp, out := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", map[string]any{"input": "x", "webhook": tc.hook})
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, name)
		require.Equal(t, tc.field, out["error"].(map[string]any)["details"].(map[string]any)["field"], name)
	}
	runs, _, err := b.db.ListRuns(context.Background(), store.ListRunsParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Empty(t, runs, "a refused create wrote nothing")
}

// Tenant default endpoints need an admin; a run created after one is
// registered delivers there too.
func TestWebhookEndpointsNeedAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, hookOpts(""))
	resp, _ := b.do("PUT", "/v1/webhooks/endpoints/main", "tnt_a", map[string]any{"url": "https://example.com/h"})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = b.do("GET", "/v1/webhooks/secret", "tnt_a", nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

func TestDueTicks(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	every := everySpec{time.Second}
	for name, tc := range map[string]struct {
		policy  string
		catchUp int
		now     time.Time
		fire    []time.Time
		skipped int
		next    time.Time
	}{
		"on time":          {store.MisfireSkip, 0, sec(0), []time.Time{sec(0)}, 0, sec(1)},
		"within grace":     {store.MisfireSkip, 0, sec(2), []time.Time{sec(0), sec(1), sec(2)}, 0, sec(3)},
		"skip missed":      {store.MisfireSkip, 0, sec(60), []time.Time{sec(55), sec(56), sec(57), sec(58), sec(59), sec(60)}, 55, sec(61)},
		"catch up 2":       {store.MisfireCatchUp, 2, sec(60), []time.Time{sec(53), sec(54), sec(55), sec(56), sec(57), sec(58), sec(59), sec(60)}, 53, sec(61)},
		"catch up > there": {store.MisfireCatchUp, 100, sec(7), []time.Time{sec(0), sec(1), sec(2), sec(3), sec(4), sec(5), sec(6), sec(7)}, 0, sec(8)},
	} {
		next := t0
		sc := store.Schedule{MisfirePolicy: tc.policy, CatchUpMax: tc.catchUp, NextRunAt: &next}
		fire, skipped, nx := dueTicks(sc, every, tc.now, 5*time.Second)
		require.Equal(t, tc.fire, fire, name)
		require.Equal(t, tc.skipped, skipped, name)
		require.Equal(t, tc.next, nx, name)
	}
	// Down for longer than the scan: resume after now, all skipped.
	next := t0
	fire, skipped, nx := dueTicks(store.Schedule{MisfirePolicy: store.MisfireSkip, NextRunAt: &next}, every, t0.Add(1000*time.Hour), 5*time.Second)
	require.Empty(t, fire)
	require.Equal(t, maxTickScan, skipped)
	require.Equal(t, t0.Add(1000*time.Hour+time.Second), nx)
}

func TestParseSpec(t *testing.T) {
	t.Parallel()
	paris, err := parseSpec("0 9 * * *", "", "Europe/Paris")
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 7, 1, 7, 0, 0, 0, time.UTC), paris.Next(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)), "09:00 in Paris is 07:00 UTC in summer")
	secs, err := parseSpec("*/10 * * * * *", "", "UTC")
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 7, 1, 0, 0, 10, 0, time.UTC), secs.Next(time.Date(2026, 7, 1, 0, 0, 3, 0, time.UTC)))
	for name, tc := range map[string]struct{ cron, every, tz, field string }{
		"neither":      {"", "", "UTC", "cron"},
		"both":         {"* * * * *", "1s", "UTC", "cron"},
		"bad cron":     {"61 * * * *", "", "UTC", "cron"},
		"tz in cron":   {"CRON_TZ=UTC * * * * *", "", "UTC", "cron"},
		"short every":  {"", "500ms", "UTC", "every"},
		"bad every":    {"", "soon", "UTC", "every"},
		"bad timezone": {"", "1s", "Mars/Olympus", "timezone"},
	} {
		_, err := parseSpec(tc.cron, tc.every, tc.tz)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), tc.field, name)
	}
}

func TestSchedulesAPIAndTicks(t *testing.T) {
	t.Parallel()
	o := hookOpts("")
	base := o.cfgFn
	o.cfgFn = func(c *config.Config) { base(c); c.SchedulePoll = 50 * time.Millisecond }
	b := setup(t, o)
	for name, tc := range map[string]struct {
		body   map[string]any
		status int
		field  string
	}{
		"no agent":       {map[string]any{"every": "1s", "input": "x"}, 400, "agent_id"},
		"no input":       {map[string]any{"agent_id": "agt_echo", "every": "1s"}, 400, "input"},
		"bad policy":     {map[string]any{"agent_id": "agt_echo", "every": "1s", "input": "x", "misfire_policy": "all"}, 400, "misfire_policy"},
		"catch up range": {map[string]any{"agent_id": "agt_echo", "every": "1s", "input": "x", "misfire_policy": "catch_up", "catch_up_max": 0}, 400, "catch_up_max"},
		"unknown agent":  {map[string]any{"agent_id": "agt_nope", "every": "1s", "input": "x"}, 404, "agent_id"},
	} {
		resp, out := b.do("POST", "/v1/schedules", "tnt_a", tc.body)
		require.Equal(t, tc.status, resp.StatusCode, name)
		require.Equal(t, tc.field, out["error"].(map[string]any)["details"].(map[string]any)["field"], name)
	}
	resp, out := b.do("POST", "/v1/schedules", "tnt_a", map[string]any{"agent_id": "agt_echo", "every": "1s", "input": "tick"})
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	sc := out["schedule"].(map[string]any)
	id := sc["schedule_id"].(string)
	require.Equal(t, "active", sc["status"])
	require.Equal(t, "skip", sc["misfire_policy"])

	// Ticks create runs labelled with their tick, each tick once.
	var runs []store.Run
	require.Eventually(t, func() bool {
		var err error
		runs, _, err = b.db.ListRuns(context.Background(), store.ListRunsParams{TenantID: "tnt_a"})
		require.NoError(t, err)
		return len(runs) >= 2
	}, 20*time.Second, 20*time.Millisecond)
	resp, out = b.do("POST", "/v1/schedules/"+id+":pause", "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.Equal(t, "paused", out["schedule"].(map[string]any)["status"])
	require.Nil(t, out["schedule"].(map[string]any)["next_run_at"])
	runs, _, err := b.db.ListRuns(context.Background(), store.ListRunsParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	ticks := map[string]bool{}
	for _, r := range runs {
		require.Contains(t, r.IdempotencyKey, "schedule:"+id+":")
		require.False(t, ticks[r.IdempotencyKey], "tick fired twice")
		ticks[r.IdempotencyKey] = true
		require.Equal(t, "tick", r.Input.Text)
	}
	resp, out = b.do("GET", "/v1/schedules/"+id, "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, out["schedule"].(map[string]any)["last_run_id"])
	resp, _ = b.do("GET", "/v1/schedules/"+id, "tnt_b", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = b.do("POST", "/v1/schedules/"+id+":resume", "tnt_b", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, out = b.do("POST", "/v1/schedules/"+id+":resume", "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "active", out["schedule"].(map[string]any)["status"])
	resp, out = b.do("GET", "/v1/schedules", "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, out["schedules"].([]any), 1)
	resp, _ = b.do("DELETE", "/v1/schedules/"+id, "tnt_b", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = b.do("DELETE", "/v1/schedules/"+id, "tnt_a", nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, _ = b.do("GET", "/v1/schedules/"+id, "tnt_a", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// Two replicas that read the same due tick both fire it: one run is
// created, the other gets it back (idempotency key), and the schedule
// advances once.
func TestScheduleTickFiredByTwoReplicasMakesOneRun(t *testing.T) {
	t.Parallel()
	b := setup(t, hookOpts(""))
	ctx := context.Background()
	resp, out := b.do("POST", "/v1/schedules", "tnt_a", map[string]any{"agent_id": "agt_echo", "every": "1h", "input": "once"})
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	id := out["schedule"].(map[string]any)["schedule_id"].(string)
	tick := time.Now().UTC().Add(-time.Second).Truncate(time.Microsecond)
	_, err := b.db.SetScheduleStatus(ctx, "tnt_a", id, store.ScheduleActive, &tick, time.Now())
	require.NoError(t, err)
	sc, err := b.db.GetSchedule(ctx, "tnt_a", id)
	require.NoError(t, err)

	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.srv.fireSchedule(ctx, sc, time.Now().UTC())
		}()
	}
	wg.Wait()
	runs, _, err := b.db.ListRuns(ctx, store.ListRunsParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, runs, 1, "one run for the tick")
	require.Equal(t, "schedule:"+id+":"+tick.Format(time.RFC3339Nano), runs[0].IdempotencyKey)
	got, err := b.db.GetSchedule(ctx, "tnt_a", id)
	require.NoError(t, err)
	require.True(t, tick.Add(time.Hour).Equal(*got.NextRunAt), "advanced once, to the next tick")
	require.Equal(t, runs[0].RunID, got.LastRunID)
}

// TestScheduleOnThread: a schedule with a thread_id creates each tick's
// run on the thread (strategy enqueue): its turn lands on the thread and
// the next tick's model input carries the earlier turns. A thread the
// tenant does not have is refused at create.
func TestScheduleOnThread(t *testing.T) {
	t.Parallel()
	rec := &recordingModel{scriptedModel: &scriptedModel{}, input: map[string][][]modelport.Message{}}
	o := hookOpts("")
	o.port = rec
	b := setup(t, o)
	ctx := context.Background()
	threadID := newThread(t, b, "tnt_a", nil)
	otherTenants := newThread(t, b, "tnt_b", nil)
	for name, tc := range map[string]string{"unknown thread": "thr_nope", "another tenant's thread": otherTenants} {
		resp, out := b.do("POST", "/v1/schedules", "tnt_a", map[string]any{"agent_id": "agt_echo", "every": "1h", "input": "x", "thread_id": tc})
		require.Equal(t, http.StatusNotFound, resp.StatusCode, name)
		require.Equal(t, "thread_id", out["error"].(map[string]any)["details"].(map[string]any)["field"], name)
	}
	resp, out := b.do("POST", "/v1/schedules", "tnt_a", map[string]any{"agent_id": "agt_echo", "every": "1h",
		"input": "scheduled hello", "thread_id": threadID})
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	id := out["schedule"].(map[string]any)["schedule_id"].(string)
	require.Equal(t, threadID, out["schedule"].(map[string]any)["thread_id"])

	// fire makes the schedule due at a tick of its own and fires it.
	fire := func(ago time.Duration) store.Run {
		t.Helper()
		tick := time.Now().UTC().Add(-ago).Truncate(time.Microsecond)
		_, err := b.db.SetScheduleStatus(ctx, "tnt_a", id, store.ScheduleActive, &tick, time.Now())
		require.NoError(t, err)
		sc, err := b.db.GetSchedule(ctx, "tnt_a", id)
		require.NoError(t, err)
		b.srv.fireSchedule(ctx, sc, time.Now().UTC())
		sc, err = b.db.GetSchedule(ctx, "tnt_a", id)
		require.NoError(t, err)
		require.Empty(t, sc.LastError)
		require.NotEmpty(t, sc.LastRunID)
		run, err := b.db.GetRun(ctx, "tnt_a", sc.LastRunID)
		require.NoError(t, err)
		require.Equal(t, "schedule:"+id+":"+tick.Format(time.RFC3339Nano), run.IdempotencyKey)
		return run
	}
	first := fire(2 * time.Second)
	require.Equal(t, threadID, first.ThreadID)
	require.Equal(t, store.MultitaskEnqueue, first.MultitaskStrategy)
	b.waitStatus("tnt_a", first.RunID, store.RunCompleted)
	second := fire(time.Second)
	require.Equal(t, threadID, second.ThreadID)
	b.waitStatus("tnt_a", second.RunID, store.RunCompleted)

	require.Equal(t, "system:echo|user:scheduled hello", roles(rec.firstCall(first.RunID)))
	require.Equal(t, `system:echo|user:scheduled hello|assistant:|tool:{"text":"scheduled hello"}|`+
		`assistant:Echo: {"text":"scheduled hello"}|user:scheduled hello`, roles(rec.firstCall(second.RunID)))
	msgs, err := b.db.ListThreadMessages(ctx, store.ListThreadMessagesParams{TenantID: "tnt_a", ThreadID: threadID})
	require.NoError(t, err)
	var turns []string
	for _, m := range msgs {
		if m.Role == "user" {
			turns = append(turns, m.RunID)
		}
	}
	require.Equal(t, []string{first.RunID, second.RunID}, turns, "each tick's turn is on the thread")

	// A deleted thread: the tick is recorded as failed, not retried forever.
	resp, _ = b.do("DELETE", "/v1/threads/"+threadID, "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	tick := time.Now().UTC().Add(-time.Second).Truncate(time.Microsecond)
	_, err = b.db.SetScheduleStatus(ctx, "tnt_a", id, store.ScheduleActive, &tick, time.Now())
	require.NoError(t, err)
	sc, err := b.db.GetSchedule(ctx, "tnt_a", id)
	require.NoError(t, err)
	b.srv.fireSchedule(ctx, sc, time.Now().UTC())
	sc, err = b.db.GetSchedule(ctx, "tnt_a", id)
	require.NoError(t, err)
	require.Contains(t, sc.LastError, "thread "+threadID+" not found")
	require.True(t, sc.NextRunAt.After(tick), "the tick was passed")
}
