package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/stdwebhook"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/tests/testnode"
)

// hookReceiver answers 503 to the first failFirst deliveries, 204 after.
type hookReceiver struct {
	mu        sync.Mutex
	failFirst int
	got       []receivedDelivery
}

type receivedDelivery struct {
	header http.Header
	body   []byte
	status int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	status := http.StatusNoContent
	if len(h.got) < h.failFirst {
		status = http.StatusServiceUnavailable
	}
	h.got = append(h.got, receivedDelivery{header: r.Header.Clone(), body: body, status: status})
	h.mu.Unlock()
	w.WriteHeader(status)
}

func (h *hookReceiver) deliveries() []receivedDelivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// TestWebhookDeliveredOnThirdAttempt: a run's terminal event is delivered
// to a receiver that fails the first two attempts; the orchestrator is
// killed (SIGKILL) after the first failure and restarted, and the outbox
// still delivers on the third attempt, with the same webhook-id and a
// signature that verifies with the tenant's secret (read by the tenant
// admin). The deliveries list shows the three attempts.
func TestWebhookDeliveredOnThirdAttempt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	rc := &hookReceiver{failFirst: 2}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	// A 2 s base: the kill and restart below happen before the retry.
	n := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_WEBHOOK_ALLOW=127.0.0.1", "AGENTOS_WEBHOOK_RETRY_BASE=2s"}})
	ctx := t.Context()
	admin := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: n.Credentials().TenantAdmin.Token}
	user := &apiclient.Client{BaseURL: n.URL("orchestrator"), TenantID: "tnt_demo"}

	run, err := user.CreateRun(ctx, "agt_sample_echo_v1", "hello hooks",
		map[string]any{"webhook": map[string]any{"url": srv.URL + "/agentos", "events": []string{"terminal"}}})
	require.NoError(t, err)
	// Once the first failed attempt is recorded, kill -9 the orchestrator:
	// the retry lives in the store, not in the process.
	require.Eventually(t, func() bool {
		ds, err := user.ListWebhookDeliveries(ctx, run.RunID)
		require.NoError(t, err)
		return len(ds) == 1 && len(ds[0].Attempts) == 1
	}, 60*time.Second, 20*time.Millisecond, "the first attempt is recorded")
	n.Kill("orchestrator")
	n.StartService("orchestrator")
	require.Eventually(t, func() bool { return len(rc.deliveries()) >= 3 }, 90*time.Second, 50*time.Millisecond,
		"the third attempt arrives after the restart")

	sec, err := admin.GetWebhookSecret(ctx)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(sec.Secret, "whsec_"))
	got := rc.deliveries()
	require.Len(t, got, 3)
	for i, d := range got {
		require.Equal(t, got[0].header.Get("webhook-id"), d.header.Get("webhook-id"), "attempt %d", i+1)
		require.NoError(t, stdwebhook.Verify(d.header, d.body, sec.Secret, time.Now(), 5*time.Minute), "attempt %d", i+1)
	}
	var msg struct {
		Type string      `json:"type"`
		Data store.Event `json:"data"`
	}
	require.NoError(t, json.Unmarshal(got[2].body, &msg))
	require.Equal(t, store.EventRunCompleted, msg.Type)
	require.Equal(t, run.RunID, msg.Data.RunID)

	var ds []store.WebhookDelivery
	require.Eventually(t, func() bool {
		ds, err = user.ListWebhookDeliveries(ctx, run.RunID)
		require.NoError(t, err)
		return len(ds) == 1 && ds[0].Status == store.DeliverySucceeded
	}, 30*time.Second, 50*time.Millisecond)
	codes := []int{}
	for _, a := range ds[0].Attempts {
		codes = append(codes, a.StatusCode)
	}
	require.Equal(t, []int{503, 503, 204}, codes)
	require.Equal(t, got[0].header.Get("webhook-id"), ds[0].DeliveryID)
	require.Nil(t, ds[0].NextAttemptAt)

	// The tenant's secret rotates; the old one keeps verifying for a day
	// (a second signature) so receivers switch without losing deliveries.
	rot, err := admin.RotateWebhookSecret(ctx)
	require.NoError(t, err)
	require.NotEqual(t, sec.Secret, rot.Secret)
	require.NotNil(t, rot.PreviousValidUntil)
	_, err = user.GetWebhookSecret(ctx)
	require.Error(t, err, "a tenant user cannot read the secret")
}

// TestScheduleTwoReplicasOneRunPerTick: a schedule ticking every second
// for five seconds on two orchestrator replicas sharing one PostgreSQL
// store creates 5 ± 1 runs, one per tick, none twice. Managed with the
// CLI (`agentos schedules`) and the typed client.
func TestScheduleTwoReplicasOneRunPerTick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pgURL := pgtest.URL(t)
	// Both replicas poll often, so that they often fire the same tick.
	common := []string{"AGENTOS_STORE_URL=" + pgURL, "AGENTOS_SCHEDULE_POLL=10ms"}
	first := testnode.Start(t, testnode.Options{Env: common})
	second := testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}, Env: append(slices.Clone(common),
		"AGENTOS_HOME="+first.Home, "AGENTOS_MODEL_POLICY_ADDR="+first.Addrs["model-policy"])})
	ctx := t.Context()
	c := &apiclient.Client{BaseURL: first.URL("orchestrator"), TenantID: "tnt_demo"}

	sc, err := c.CreateSchedule(ctx, apiclient.ScheduleRequest{AgentID: "agt_sample_echo_v1", Every: "1s", Input: "tick"})
	require.NoError(t, err)
	// Five ticks: created_at+1s ... created_at+5s.
	time.Sleep(time.Until(sc.CreatedAt.Add(5*time.Second + 400*time.Millisecond)))
	out, err := first.Run(ctx, "schedules", "pause", sc.ScheduleID, "--json", "--orchestrator-url", second.URL("orchestrator"))
	require.NoError(t, err, out)
	require.Contains(t, out, `"status":"paused"`)

	ticks := map[string]string{}
	cursor := ""
	for {
		runs, next, err := c.ListRuns(ctx, apiclient.RunFilter{AgentID: "agt_sample_echo_v1", Cursor: cursor, Limit: 500})
		require.NoError(t, err)
		for _, r := range runs {
			var rc struct {
				Labels map[string]string `json:"labels"`
			}
			require.NoError(t, json.Unmarshal(r.Context, &rc), string(r.Context))
			if rc.Labels["agentos.schedule_id"] != sc.ScheduleID {
				continue
			}
			tick := rc.Labels["agentos.tick"]
			require.NotContains(t, ticks, tick, "tick fired twice: %s and %s", ticks[tick], r.RunID)
			ticks[tick] = r.RunID
		}
		if next == "" {
			break
		}
		cursor = next
	}
	require.InDelta(t, 5, len(ticks), 1, "runs of a 1 s schedule over 5 s: %v", ticks)
	created, replayed := 0, 0
	for _, n := range []*testnode.Node{first, second} {
		created += metricSum(t, n.URL("orchestrator"), `agentos_schedule_ticks_total{outcome="created"}`)
		replayed += metricSum(t, n.URL("orchestrator"), `agentos_schedule_ticks_total{outcome="replayed"}`)
	}
	require.Equal(t, len(ticks), created, "one replica created each tick's run")
	t.Logf("%d ticks, %d runs; %d tick(s) also fired by the other replica and answered with the same run", len(ticks), created, replayed)

	out, err = first.Run(ctx, "schedules", "get", sc.ScheduleID, "--json")
	require.NoError(t, err, out)
	require.Contains(t, out, `"last_run_id":"run_`)
	got, err := (&apiclient.Client{BaseURL: second.URL("orchestrator"), TenantID: "tnt_demo"}).GetSchedule(ctx, sc.ScheduleID)
	require.NoError(t, err)
	require.Equal(t, store.SchedulePaused, got.Status)
	_, err = (&apiclient.Client{BaseURL: second.URL("orchestrator"), TenantID: "tnt_other"}).GetSchedule(ctx, sc.ScheduleID)
	require.Error(t, err)
	require.NoError(t, c.DeleteSchedule(ctx, sc.ScheduleID))

}
