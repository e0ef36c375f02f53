package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestConcurrentRunsAndResume runs 200 concurrent runs of the sample agent
// on a real node (orchestrator and model-policy processes): every run
// completes and every event stream is 1..N with run.created first and
// exactly one terminal event, last. Then a stream dropped after three
// events and resumed with Last-Event-ID delivers exactly the missing ones,
// and 1,000 concurrent creates with one idempotency key make one run.
func TestConcurrentRunsAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	node := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_QUOTA_RUN_CREATE_QPS=1000", "AGENTOS_QUOTA_CONCURRENT_RUNS=200",
		"AGENTOS_QUOTA_INVOKE_QPS=1000",
		// 200 runs followed at once: above the default 100 streams a tenant.
		"AGENTOS_QUOTA_MAX_STREAMS=1000"}})
	base := node.URL("orchestrator")
	user := map[string]string{"X-Tenant-Id": "tnt_demo"}

	const n = 200
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out := runsJSON(t, "POST", base+"/v1/agents/agt_sample_echo_v1/runs", user, map[string]any{"input": fmt.Sprintf("hello %d", i)})
			if code != 201 {
				errc <- fmt.Errorf("create %d: %d %v", i, code, out)
				return
			}
			id := out["run"].(map[string]any)["run_id"].(string)
			evs := runsStream(t, base, id)
			if err := checkStream(evs); err != nil {
				errc <- fmt.Errorf("run %s: %w", id, err)
				return
			}
			if last := evs[len(evs)-1]; last.Type != store.EventRunCompleted {
				errc <- fmt.Errorf("run %s ended with %s", id, last.Type)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}

	// Resume after a dropped connection.
	code, out := runsJSON(t, "POST", base+"/v1/agents/agt_sample_echo_v1/runs", user, map[string]any{"input": "resume me"})
	require.Equal(t, 201, code, out)
	id := out["run"].(map[string]any)["run_id"].(string)
	full := runsStream(t, base, id)
	require.NoError(t, checkStream(full))
	first := readFirst(t, base, id, 3) // the connection drops after three events
	require.Equal(t, full[:3], first)
	req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/runs/"+id+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	req.Header.Set("Last-Event-ID", "3")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var rest []store.Event
	require.NoError(t, events.ReadSSE(resp.Body, func(f events.Frame) error {
		e, err := events.DecodeFrame(f)
		rest = append(rest, e)
		return err
	}))
	require.Equal(t, full[3:], rest, "exactly the missing events, no more, no fewer")

	sameKeyConcurrently(t, base)
}

// sameKeyConcurrently sends 1,000 concurrent creates with one idempotency
// key: exactly one creates the run (201), every other answers with that
// same run (200, Idempotent-Replayed); then the key with another body is
// 409 and creates nothing.
func sameKeyConcurrently(t *testing.T, base string) {
	const n = 1000
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	post := func(body string) (int, string, error) {
		req, err := http.NewRequestWithContext(t.Context(), "POST", base+"/v1/agents/agt_sample_echo_v1/runs", strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		req.Header.Set("Idempotency-Key", "e2e-same-key")
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		var out struct {
			Run struct {
				RunID string `json:"run_id"`
			} `json:"run"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Run.RunID, err
	}
	type answer struct {
		code  int
		runID string
		err   error
	}
	answers := make(chan answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, id, err := post(`{"input":"only once"}`)
			answers <- answer{code, id, err}
		}()
	}
	close(start)
	wg.Wait()
	close(answers)
	created, replayed := 0, 0
	ids := map[string]bool{}
	for a := range answers {
		require.NoError(t, a.err)
		switch a.code {
		case http.StatusCreated:
			created++
		case http.StatusOK:
			replayed++
		default:
			t.Fatalf("status %d", a.code)
		}
		ids[a.runID] = true
	}
	require.Equal(t, 1, created)
	require.Equal(t, n-1, replayed)
	require.Len(t, ids, 1, "every answer names the one run")

	code, _, err := post(`{"input":"something else"}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, code)
	// The node holds one run with that input and none with the other.
	code, out := runsJSON(t, "GET", base+"/v1/runs?limit=200", map[string]string{"X-Tenant-Id": "tnt_demo"}, nil)
	require.Equal(t, http.StatusOK, code, out)
	byInput := map[string]int{}
	for _, r := range out["runs"].([]any) {
		in, _ := r.(map[string]any)["input"].(map[string]any)
		text, _ := in["text"].(string)
		byInput[text]++
		if text == "only once" {
			require.True(t, ids[r.(map[string]any)["run_id"].(string)])
		}
	}
	require.Equal(t, 1, byInput["only once"])
	require.Zero(t, byInput["something else"])
}

// checkStream verifies 1..N, run.created first, exactly one terminal event, last.
func checkStream(evs []store.Event) error {
	if len(evs) == 0 || evs[0].Type != store.EventRunCreated {
		return fmt.Errorf("stream does not start with run.created")
	}
	terminals := 0
	for i, e := range evs {
		if e.Sequence != int64(i+1) {
			return fmt.Errorf("sequence %d at position %d", e.Sequence, i)
		}
		if store.IsTerminalEvent(e.Type) {
			terminals++
		}
	}
	if terminals != 1 || !store.IsTerminalEvent(evs[len(evs)-1].Type) {
		return fmt.Errorf("%d terminal events; last is %s", terminals, evs[len(evs)-1].Type)
	}
	return nil
}

// readFirst reads k events of a run's stream, then drops the connection.
func readFirst(t *testing.T, base, runID string, k int) []store.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/runs/"+runID+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var got []store.Event
	errStop := fmt.Errorf("enough")
	err = events.ReadSSE(resp.Body, func(f events.Frame) error {
		e, err := events.DecodeFrame(f)
		if err != nil {
			return err
		}
		got = append(got, e)
		if len(got) == k {
			return errStop
		}
		return nil
	})
	require.ErrorIs(t, err, errStop)
	return got
}
