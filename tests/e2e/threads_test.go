package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/tests/testnode"
)

// holdHook is a webhook tool's endpoint that holds each call while hold is
// set (a run stays active inside its tool call) and answers at once
// otherwise.
type holdHook struct {
	hold    atomic.Bool
	release chan struct{}
	entered chan struct{}
	srv     *httptest.Server
}

func newHoldHook(t *testing.T) *holdHook {
	h := &holdHook{release: make(chan struct{}), entered: make(chan struct{}, 64)}
	h.hold.Store(true)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.hold.Load() {
			h.entered <- struct{}{}
			select {
			case <-h.release:
			case <-r.Context().Done():
			}
		}
		_, _ = w.Write([]byte(`{"output":{"ok":true}}`))
	}))
	t.Cleanup(func() { h.open(); h.srv.Close() })
	return h
}

// open stops holding: held calls and later ones are answered.
func (h *holdHook) open() {
	if h.hold.CompareAndSwap(true, false) {
		close(h.release)
	}
}

// TestThreadsEndToEnd runs a real node: a three-turn conversation whose
// every turn's model input carries the earlier turns, a thread that
// another tenant cannot see, and each multitask strategy under concurrent
// creates.
func TestThreadsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	n := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1"}})
	ctx := t.Context()
	creds := n.Credentials()
	base := n.URL("orchestrator")
	admin := &apiclient.Client{BaseURL: base, Token: creds.PlatformAdmin.Token, TenantID: "tnt_demo"}
	// Concurrent creates below must meet the thread's lock, not the
	// tenant's run-create rate limit.
	_, err := admin.PatchTenant(ctx, "tnt_demo", map[string]any{"quotas": map[string]any{"runs": map[string]any{
		"run_create_qps": 1000, "run_create_burst": 1000, "max_concurrent_runs": 100}}})
	require.NoError(t, err)
	user := &apiclient.Client{BaseURL: base, TenantID: "tnt_demo"}

	t.Run("conversation", func(t *testing.T) {
		th, err := user.CreateThread(ctx, map[string]string{"user": "u_e2e"})
		require.NoError(t, err)
		var before []store.ThreadMessage
		for turn, text := range []string{"my name is Ada", "I live in London", "what do you know about me?"} {
			run, err := user.CreateThreadRun(ctx, th.ThreadID, "agt_sample_echo_v1", text, "", nil)
			require.NoError(t, err)
			require.Equal(t, th.ThreadID, run.ThreadID)
			run = waitRun(t, user, run.RunID)
			require.Equal(t, store.RunCompleted, run.Status)
			// The model.requested events of this turn name exactly the
			// thread's messages of the turns before it.
			evs, err := user.ListEvents(ctx, run.RunID)
			require.NoError(t, err)
			var ids []string
			for _, m := range before {
				ids = append(ids, m.MessageID)
			}
			requested := 0
			for _, e := range evs {
				if e.Type != store.EventModelRequested {
					continue
				}
				requested++
				var p struct {
					InputSummary struct {
						Messages      int `json:"messages"`
						ThreadHistory struct {
							Messages   int      `json:"messages"`
							MessageIDs []string `json:"message_ids"`
						} `json:"thread_history"`
					} `json:"input_summary"`
				}
				require.NoError(t, json.Unmarshal(e.Payload, &p))
				require.Equal(t, len(before), p.InputSummary.ThreadHistory.Messages, "turn %d", turn+1)
				require.Equal(t, ids, nilIfEmpty(p.InputSummary.ThreadHistory.MessageIDs), "turn %d", turn+1)
				require.GreaterOrEqual(t, p.InputSummary.Messages, len(before)+1)
			}
			require.Positive(t, requested)
			after, err := user.ThreadMessages(ctx, th.ThreadID)
			require.NoError(t, err)
			require.Greater(t, len(after), len(before))
			if len(before) > 0 {
				require.Equal(t, before, after[:len(before)], "a turn only appends")
			}
			require.Equal(t, "user", after[len(before)].Role)
			require.Equal(t, text, after[len(before)].Content)
			require.Equal(t, "assistant", after[len(after)-1].Role)
			require.Equal(t, run.Output.Text, after[len(after)-1].Content)
			before = after
		}
		got, _, err := user.ListThreads(ctx, apiclient.ThreadFilter{Metadata: map[string]string{"user": "u_e2e"}})
		require.NoError(t, err)
		require.Len(t, got, 1)

		// Another tenant: the thread does not exist for it.
		_, err = admin.CreateTenant(ctx, map[string]any{"tenant_id": "tnt_threads_b", "name": "B"})
		require.NoError(t, err)
		other := &apiclient.Client{BaseURL: base, TenantID: "tnt_threads_b"}
		_, err = other.GetThread(ctx, th.ThreadID)
		requireCode(t, err, errs.NotFound)
		_, _, err = other.ListThreadMessages(ctx, th.ThreadID, "", 0)
		requireCode(t, err, errs.NotFound)
		_, err = other.CreateThreadRun(ctx, th.ThreadID, "agt_sample_echo_v1", "hi", "", nil)
		requireCode(t, err, errs.NotFound)
		requireCode(t, other.DeleteThread(ctx, th.ThreadID), errs.NotFound)
		got, _, err = other.ListThreads(ctx, apiclient.ThreadFilter{})
		require.NoError(t, err)
		require.Empty(t, got)

		require.NoError(t, user.DeleteThread(ctx, th.ThreadID))
		_, err = user.GetThread(ctx, th.ThreadID)
		requireCode(t, err, errs.NotFound)
	})

	t.Run("cli", func(t *testing.T) {
		cli := func(args ...string) (string, int) {
			t.Helper()
			out, err := n.Run(ctx, args...)
			if ee, ok := err.(*exec.ExitError); ok {
				return out, ee.ExitCode()
			}
			require.NoError(t, err, out)
			return out, 0
		}
		threadID, code := cli("threads", "create", "--metadata", "user=u_cli")
		require.Equal(t, 0, code, threadID)
		require.True(t, strings.HasPrefix(threadID, "thr_"), threadID)
		out, code := cli("threads", "run", threadID, "agt_sample_echo_v1", "first from the cli")
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "completed")
		out, code = cli("threads", "run", threadID, "agt_sample_echo_v1", "second from the cli", "--strategy", "enqueue")
		require.Equal(t, 0, code, out)
		out, code = cli("threads", "messages", threadID)
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "first from the cli")
		require.Contains(t, out, "second from the cli")
		out, code = cli("threads", "list", "--metadata", "user=u_cli")
		require.Equal(t, 0, code, out)
		require.Contains(t, out, threadID)
		out, code = cli("threads", "get", threadID, "--json")
		require.Equal(t, 0, code, out)
		require.Contains(t, out, `"active_run_id":""`)
		out, code = cli("threads", "delete", threadID)
		require.Equal(t, 0, code, out)
		out, code = cli("threads", "get", threadID)
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "not_found")
	})

	// A tool that holds its calls keeps a thread's run active.
	hook := newHoldHook(t)
	agent := registerHold(t, admin, hook)

	// concurrently creates k runs on thread with strategy and returns the
	// admitted runs and the errors.
	concurrently := func(threadID, strategy string, k int) ([]store.Run, []error) {
		var mu sync.Mutex
		var runs []store.Run
		var fails []error
		var wg sync.WaitGroup
		for i := range k {
			wg.Add(1)
			go func() {
				defer wg.Done()
				run, err := user.CreateThreadRun(ctx, threadID, agent, fmt.Sprintf("%s %d", strategy, i), strategy, nil)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					fails = append(fails, err)
					return
				}
				runs = append(runs, run)
			}()
		}
		wg.Wait()
		return runs, fails
	}
	activeOf := func(threadID string) string {
		th, err := user.GetThread(ctx, threadID)
		require.NoError(t, err)
		return th.ActiveRunID
	}
	// held creates a run on a new thread and waits until it is inside its
	// tool call.
	held := func() (string, store.Run) {
		for len(hook.entered) > 0 { // calls of earlier tests' runs
			<-hook.entered
		}
		th, err := user.CreateThread(ctx, nil)
		require.NoError(t, err)
		run, err := user.CreateThreadRun(ctx, th.ThreadID, agent, "held", "", nil)
		require.NoError(t, err)
		waitEntered(t, hook)
		return th.ThreadID, run
	}

	t.Run("reject", func(t *testing.T) {
		th, err := user.CreateThread(ctx, nil)
		require.NoError(t, err)
		runs, fails := concurrently(th.ThreadID, "reject", 10)
		require.Len(t, runs, 1, "exactly one of 10 concurrent creates is admitted")
		require.Len(t, fails, 9)
		for _, err := range fails {
			requireCode(t, err, errs.Conflict)
			require.Equal(t, runs[0].RunID, errs.As(err).Details["active_run_id"])
		}
		require.Equal(t, runs[0].RunID, activeOf(th.ThreadID))
		waitEntered(t, hook)
		_, err = user.CancelRun(ctx, runs[0].RunID, "done")
		require.NoError(t, err)
		require.Equal(t, store.RunCanceled, waitRun(t, user, runs[0].RunID).Status)
		require.Empty(t, activeOf(th.ThreadID))
	})

	for _, strategy := range []string{"interrupt", "rollback"} {
		t.Run(strategy, func(t *testing.T) {
			threadID, first := held()
			runs, fails := concurrently(threadID, strategy, 5)
			require.Empty(t, fails)
			require.Len(t, runs, 5)
			require.Equal(t, store.RunCanceled, waitRun(t, user, first.RunID).Status)
			// Each create canceled the one before it: one survives, active.
			active := activeOf(threadID)
			var live []string
			for _, r := range runs {
				got, err := user.GetRun(ctx, r.RunID)
				require.NoError(t, err)
				if !got.Status.Terminal() {
					live = append(live, r.RunID)
				} else {
					require.Equal(t, store.RunCanceled, got.Status)
				}
			}
			require.Equal(t, []string{active}, live, "exactly one run of the thread is active")
			msgs, err := user.ThreadMessages(ctx, threadID)
			require.NoError(t, err)
			var inputs []string
			for _, m := range msgs {
				if m.Role == "user" {
					inputs = append(inputs, m.Content)
				}
			}
			if strategy == "interrupt" {
				require.Contains(t, inputs, "held", "an interrupted run's partial turn is kept")
			} else {
				require.Empty(t, msgs, "a rolled-back run's turn is discarded")
			}
			_, err = user.CancelRun(ctx, active, "done")
			require.NoError(t, err)
			waitRun(t, user, active)
		})
	}

	t.Run("enqueue", func(t *testing.T) {
		threadID, first := held()
		runs, fails := concurrently(threadID, "enqueue", 10)
		require.Empty(t, fails)
		require.Len(t, runs, 10)
		require.Equal(t, first.RunID, activeOf(threadID))
		for _, r := range runs {
			got, err := user.GetRun(ctx, r.RunID)
			require.NoError(t, err)
			require.Equal(t, store.RunQueued, got.Status, "an enqueued run waits while the first is active")
		}
		// Let every call through: the runs run one after another.
		hook.open()
		all := append([]store.Run{first}, runs...)
		var done []store.Run
		for _, r := range all {
			got := waitRun(t, user, r.RunID)
			require.Equal(t, store.RunCompleted, got.Status)
			done = append(done, got)
		}
		slices.SortFunc(done, func(a, b store.Run) int { return a.StartedAt.Compare(*b.StartedAt) })
		require.Equal(t, first.RunID, done[0].RunID)
		for i := 1; i < len(done); i++ {
			require.False(t, done[i].StartedAt.Before(*done[i-1].CompletedAt),
				"run %s started before %s ended", done[i].RunID, done[i-1].RunID)
		}
		// The turns are in the order the runs ran.
		msgs, err := user.ThreadMessages(ctx, threadID)
		require.NoError(t, err)
		var inputs, want []string
		for _, m := range msgs {
			if m.Role == "user" {
				inputs = append(inputs, m.Content)
			}
		}
		for _, r := range done {
			want = append(want, r.Input.Text)
		}
		require.Equal(t, want, inputs)
		require.Empty(t, activeOf(threadID))
	})
}

// registerHold registers a webhook tool calling hook and an agent using
// it, and returns the agent's id.
func registerHold(t *testing.T, admin *apiclient.Client, hook *holdHook) string {
	t.Helper()
	ctx := t.Context()
	require.NoError(t, admin.Do(ctx, "PUT", admin.BaseURL, "/v1/admin/tools/tool.e2e.thread_hold", map[string]any{"tool": map[string]any{
		"name": "hold", "description": "Holds the call.",
		"input_schema": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}},
		"url":          hook.srv.URL, "secret": "e2e-thread-hold-secret-0123456789", "timeout_ms": 120000}}, nil))
	_, err := admin.PutAgent(ctx, "agt_e2e_thread_hold", map[string]any{"name": "Hold", "model_ref": "tier:fast",
		"tools": []string{"tool.e2e.thread_hold"}, "defaults": map[string]any{"timeout_ms": 120000, "max_steps": 4}})
	require.NoError(t, err)
	return "agt_e2e_thread_hold"
}

// Two orchestrator replicas on one PostgreSQL store decide a thread's
// multitask strategy together: of 10 concurrent reject creates spread over
// both, exactly one is admitted, round after round; 10 enqueued runs
// created through both run one after another, executed by either.
func TestThreadsAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	storeURL := pgtest.URL(t)
	env := []string{"AGENTOS_STORE_URL=" + storeURL, "AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1"}
	node := testnode.Start(t, testnode.Options{Env: env})
	second := testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}, Env: append(env,
		"AGENTOS_HOME="+node.Home, "AGENTOS_MODEL_POLICY_ADDR="+node.Addrs["model-policy"])})
	ctx := t.Context()
	admin := &apiclient.Client{BaseURL: node.URL("orchestrator"), Token: node.Credentials().PlatformAdmin.Token, TenantID: "tnt_demo"}
	_, err := admin.PatchTenant(ctx, "tnt_demo", map[string]any{"quotas": map[string]any{"runs": map[string]any{
		"run_create_qps": 1000, "run_create_burst": 1000, "max_concurrent_runs": 100}}})
	require.NoError(t, err)
	hook := newHoldHook(t)
	agent := registerHold(t, admin, hook)
	replicas := []*apiclient.Client{{BaseURL: node.URL("orchestrator"), TenantID: "tnt_demo"},
		{BaseURL: second.URL("orchestrator"), TenantID: "tnt_demo"}}

	spread := func(threadID, strategy string, k int) ([]store.Run, []error) {
		var mu sync.Mutex
		var runs []store.Run
		var fails []error
		var wg sync.WaitGroup
		for i := range k {
			wg.Add(1)
			go func() {
				defer wg.Done()
				run, err := replicas[i%2].CreateThreadRun(ctx, threadID, agent, fmt.Sprintf("%s %d", strategy, i), strategy, nil)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					fails = append(fails, err)
				} else {
					runs = append(runs, run)
				}
			}()
		}
		wg.Wait()
		return runs, fails
	}
	for round := range 5 {
		th, err := replicas[0].CreateThread(ctx, nil)
		require.NoError(t, err)
		runs, fails := spread(th.ThreadID, "reject", 10)
		require.Len(t, runs, 1, "round %d: exactly one of 10 concurrent creates on two replicas is admitted", round)
		for _, err := range fails {
			requireCode(t, err, errs.Conflict)
		}
		waitEntered(t, hook)
		_, err = replicas[1].CancelRun(ctx, runs[0].RunID, "next round")
		require.NoError(t, err)
		waitRun(t, replicas[0], runs[0].RunID)
	}

	th, err := replicas[0].CreateThread(ctx, nil)
	require.NoError(t, err)
	hook.open()
	runs, fails := spread(th.ThreadID, "enqueue", 10)
	require.Empty(t, fails)
	var done []store.Run
	for _, r := range runs {
		got := waitRun(t, replicas[0], r.RunID)
		require.Equal(t, store.RunCompleted, got.Status)
		done = append(done, got)
	}
	slices.SortFunc(done, func(a, b store.Run) int { return a.StartedAt.Compare(*b.StartedAt) })
	for i := 1; i < len(done); i++ {
		require.False(t, done[i].StartedAt.Before(*done[i-1].CompletedAt),
			"run %s started before %s ended", done[i].RunID, done[i-1].RunID)
	}
	msgs, err := replicas[1].ThreadMessages(ctx, th.ThreadID)
	require.NoError(t, err)
	users := 0
	for _, m := range msgs {
		if m.Role == "user" {
			users++
		}
	}
	require.Equal(t, 10, users, "every run appended its turn")
}

// TestThreadsSurviveKill9 kills the orchestrator with SIGKILL while a
// thread's run is inside a tool call and two more wait behind it
// (enqueue), restarts it, and checks that all three end, one after
// another, each with its turn on the thread.
func TestThreadsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	n := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1"}})
	ctx := t.Context()
	admin := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: n.Credentials().PlatformAdmin.Token, TenantID: "tnt_demo"}
	hook := newHoldHook(t)
	agent := registerHold(t, admin, hook)
	user := &apiclient.Client{BaseURL: n.URL("orchestrator"), TenantID: "tnt_demo"}
	th, err := user.CreateThread(ctx, nil)
	require.NoError(t, err)
	var runs []store.Run
	for i, strategy := range []string{"reject", "enqueue", "enqueue"} {
		run, err := user.CreateThreadRun(ctx, th.ThreadID, agent, fmt.Sprintf("turn %d", i), strategy, nil)
		require.NoError(t, err)
		runs = append(runs, run)
		if i == 0 {
			waitEntered(t, hook)
		}
	}

	n.Kill("orchestrator")
	hook.open()
	n.StartService("orchestrator")

	var done []store.Run
	for _, r := range runs {
		got := waitRun(t, user, r.RunID)
		require.Equal(t, store.RunCompleted, got.Status, "run %s", r.RunID)
		done = append(done, got)
	}
	for i := 1; i < len(done); i++ {
		require.False(t, done[i].StartedAt.Before(*done[i-1].CompletedAt), "run %s started before %s ended", done[i].RunID, done[i-1].RunID)
	}
	msgs, err := user.ThreadMessages(ctx, th.ThreadID)
	require.NoError(t, err)
	var inputs []string
	for _, m := range msgs {
		if m.Role == "user" {
			inputs = append(inputs, m.Content)
		}
	}
	require.Equal(t, []string{"turn 0", "turn 1", "turn 2"}, inputs)
	require.Equal(t, "assistant", msgs[len(msgs)-1].Role)
	got, err := user.GetThread(ctx, th.ThreadID)
	require.NoError(t, err)
	require.Empty(t, got.ActiveRunID)
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func requireCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, errs.As(err).Code, "%v", err)
}

// waitRun waits until a run is terminal and returns it.
func waitRun(t *testing.T, c *apiclient.Client, runID string) store.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for {
		run, err := c.GetRun(ctx, runID)
		if err == nil && run.Status.Terminal() {
			return run
		}
		select {
		case <-ctx.Done():
			t.Fatalf("run %s did not end: %v %v", runID, run.Status, errors.Join(err, ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitEntered waits until a run is inside the hold tool.
func waitEntered(t *testing.T, h *holdHook) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(60 * time.Second):
		t.Fatal("no run entered the held tool")
	}
}
