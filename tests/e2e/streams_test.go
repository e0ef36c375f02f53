package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// hangingModelPolicy stands in for model-policy: healthy, but every model
// call waits until release is closed and then fails with 503, so runs stay
// non-terminal (and their event streams open) for as long as a test needs.
func hangingModelPolicy(t *testing.T) (url string, release func()) {
	t.Helper()
	ch := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/health") {
			_, _ = io.WriteString(w, `{"status":"ok"}`)
			return
		}
		select {
		case <-ch:
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"code":"dependency_unavailable","message":"test model-policy released","retryable":true,"details":{}}}`)
	}))
	rel := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(func() { rel(); srv.Close() })
	return srv.URL, rel
}

type streamAttempt struct {
	status     int
	code       string
	retryAfter string
	body       io.ReadCloser // open when status is 200
}

// openStream opens a run's SSE stream as tenant and returns as soon as the
// response headers arrive (a 200 stream is left open).
func openStream(ctx context.Context, client *http.Client, base, tenant, runID string) (streamAttempt, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/runs/"+runID+"/events", nil)
	if err != nil {
		return streamAttempt{}, err
	}
	req.Header.Set("X-Tenant-Id", tenant)
	resp, err := client.Do(req)
	if err != nil {
		return streamAttempt{}, err
	}
	a := streamAttempt{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode == http.StatusOK {
		a.body = resp.Body
		return a, nil
	}
	defer resp.Body.Close()
	var env struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&env)
	a.code = env.Error.Code
	return a, nil
}

func closeAll(as []streamAttempt) {
	for _, a := range as {
		if a.body != nil {
			a.body.Close()
		}
	}
}

// raiseNoFile makes sure this test process may hold need descriptors (Go
// raises the soft limit to the hard one at start on Linux; this says so
// explicitly and skips when the hard limit is too low).
func raiseNoFile(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur < need && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	}
	if lim.Cur < need {
		t.Skipf("the file-descriptor limit %d is below the %d this test needs (ulimit -Hn)", lim.Cur, need)
	}
}

// readRSS reads a process's resident set size, in MB, from /proc.
func readRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.Atoi(f[1])
			return float64(kb) / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// TestEventStreamCapsAndServerTimeouts runs a real orchestrator (its
// model-policy hangs, so runs stay open) with a node-wide cap of 8 streams
// and 1 s header and body timeouts, and checks: a tenant whose
// max_concurrent_streams is 5 gets exactly k 429s with Retry-After for
// 5+k attempts; another tenant still creates runs and opens streams until
// the node-wide cap answers 503 overloaded; closed streams free their
// slots; a client dribbling headers or a body is cut off; an SSE stream
// outlives both deadlines; and 1,500 concurrent stream attempts of one
// tenant leave the node under 300 MB RSS, still serving the other tenant.
func TestEventStreamCapsAndServerTimeouts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	mpURL, releaseModels := hangingModelPolicy(t)
	node := testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}, Env: []string{
		"AGENTOS_MODEL_POLICY_URL=" + mpURL, "AGENTOS_MAX_STREAMS=8",
		"AGENTOS_HTTP_READ_HEADER_TIMEOUT=1s", "AGENTOS_HTTP_BODY_TIMEOUT=1s",
		"AGENTOS_QUOTA_RUN_CREATE_QPS=1000"}})
	base := node.URL("orchestrator")
	admin := map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token}
	demo := map[string]string{"X-Tenant-Id": "tnt_demo"}
	other := map[string]string{"X-Tenant-Id": "tnt_other"}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	ctx := t.Context()

	code, out := runsJSON(t, "PATCH", base+"/v1/admin/tenants/tnt_demo", admin,
		map[string]any{"quotas": map[string]any{"runs": map[string]any{"max_concurrent_streams": 5}}})
	require.Equal(t, 200, code, out)
	code, out = runsJSON(t, "POST", base+"/v1/admin/tenants", admin, map[string]any{"tenant_id": "tnt_other", "name": "Other"})
	require.Equal(t, 201, code, out)
	adminOther := map[string]string{"Authorization": admin["Authorization"], "X-Tenant-Id": "tnt_other"}
	code, out = runsJSON(t, "PUT", base+"/v1/admin/agents/agt_other", adminOther, map[string]any{"agent": map[string]any{
		"name": "other", "model_ref": "tier:fast", "instructions": "answer", "tools": []string{}}})
	require.True(t, code == 200 || code == 201, "%d %v", code, out)
	createRun := func(hdr map[string]string, agent string) (int, string) {
		code, out := runsJSON(t, "POST", base+"/v1/agents/"+agent+"/runs", hdr, map[string]any{"input": map[string]any{"type": "text", "text": "hi"}})
		if code != 201 {
			return code, fmt.Sprint(out)
		}
		return code, out["run"].(map[string]any)["run_id"].(string)
	}
	code, demoRun := createRun(demo, "agt_sample_echo_v1")
	require.Equal(t, 201, code, demoRun)

	// 5 + 3 attempts of tnt_demo: exactly 3 refused, 429 rate_limited with Retry-After.
	var demoStreams []streamAttempt
	refused := 0
	for i := 0; i < 8; i++ {
		a, err := openStream(ctx, client, base, "tnt_demo", demoRun)
		require.NoError(t, err)
		switch a.status {
		case 200:
			demoStreams = append(demoStreams, a)
		case 429:
			refused++
			require.Equal(t, "rate_limited", a.code)
			require.NotEmpty(t, a.retryAfter, "429 carries Retry-After")
		default:
			t.Fatalf("stream attempt %d: status %d %s", i, a.status, a.code)
		}
	}
	require.Len(t, demoStreams, 5)
	require.Equal(t, 3, refused)

	// Another tenant is not affected: it creates a run and opens streams
	// up to the node-wide cap (8), where it gets 503 overloaded.
	code, otherRun := createRun(other, "agt_other")
	require.Equal(t, 201, code, otherRun)
	var otherStreams []streamAttempt
	for i := 0; i < 3; i++ {
		a, err := openStream(ctx, client, base, "tnt_other", otherRun)
		require.NoError(t, err)
		require.Equal(t, 200, a.status, a.code)
		otherStreams = append(otherStreams, a)
	}
	a, err := openStream(ctx, client, base, "tnt_other", otherRun)
	require.NoError(t, err)
	require.Equal(t, 503, a.status)
	require.Equal(t, "overloaded", a.code)
	require.NotEmpty(t, a.retryAfter, "503 overloaded carries Retry-After")
	code, _ = runsJSON(t, "GET", base+"/v1/runs/"+otherRun+"/events", map[string]string{"X-Tenant-Id": "tnt_other", "Accept": "application/json"}, nil)
	require.Equal(t, 200, code, "the JSON page of events is not a stream and is not capped")

	// Closing streams frees their slots: the same 5 open again.
	closeAll(demoStreams)
	closeAll(otherStreams)
	require.Eventually(t, func() bool {
		a, err := openStream(ctx, client, base, "tnt_demo", demoRun)
		if err != nil || a.status != 200 {
			return false
		}
		a.body.Close()
		return true
	}, 10*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		var again []streamAttempt
		defer func() { closeAll(again) }()
		for i := 0; i < 5; i++ {
			a, err := openStream(ctx, client, base, "tnt_demo", demoRun)
			if err != nil || a.status != 200 {
				return false
			}
			again = append(again, a)
		}
		return true
	}, 10*time.Second, 100*time.Millisecond, "every released slot is reusable")
	// A refusal after the slot was taken (an unknown run: 404) frees it
	// too: once the streams closed above are released (the server sees the
	// closes asynchronously), ten in a row with a cap of 5 are all 404.
	require.Eventually(t, func() bool {
		a, err := openStream(ctx, client, base, "tnt_demo", "run_01JDA7X4KZ1T6Y9H3W2Q8R5M7N")
		return err == nil && a.status == 404
	}, 10*time.Second, 50*time.Millisecond)
	for i := 0; i < 10; i++ {
		a, err := openStream(ctx, client, base, "tnt_demo", "run_01JDA7X4KZ1T6Y9H3W2Q8R5M7N")
		require.NoError(t, err)
		require.Equal(t, 404, a.status, "attempt %d: %s", i, a.code)
	}

	t.Run("slow headers are cut off", func(t *testing.T) {
		conn, err := net.Dial("tcp", node.Addrs["orchestrator"])
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "GET /v1/health HTTP/1.1\r\nHost: x\r\n")
		require.NoError(t, err)
		closed := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, conn) // returns when the server closes
			closed <- err
		}()
		// Dribble a header line every 200 ms for up to 20 s; the server
		// (header timeout 1 s) must close the connection well before.
		for i := 0; i < 100; i++ {
			select {
			case <-closed:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(conn, "X-Dribble-%d: 1\r\n", i); err != nil {
				return // the server closed the connection
			}
		}
		t.Fatal("a client dribbling headers kept its connection for 20 s")
	})

	t.Run("a slow body gets 408", func(t *testing.T) {
		conn, err := net.Dial("tcp", node.Addrs["orchestrator"])
		require.NoError(t, err)
		defer conn.Close()
		_, err = fmt.Fprintf(conn, "POST /v1/agents/agt_sample_echo_v1/runs HTTP/1.1\r\nHost: x\r\nX-Tenant-Id: tnt_demo\r\n"+
			"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"input\":")
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusRequestTimeout, resp.StatusCode, string(body))
	})

	t.Run("an event stream outlives the header and body deadlines", func(t *testing.T) {
		a, err := openStream(ctx, client, base, "tnt_demo", demoRun)
		require.NoError(t, err)
		require.Equal(t, 200, a.status)
		defer a.body.Close()
		got := make(chan []store.Event, 1)
		go func() {
			var evs []store.Event
			_ = events.ReadSSE(a.body, func(f events.Frame) error {
				if e, err := events.DecodeFrame(f); err == nil {
					evs = append(evs, e)
				}
				return nil
			})
			got <- evs
		}()
		time.Sleep(2500 * time.Millisecond) // past both 1 s deadlines
		select {
		case evs := <-got:
			t.Fatalf("the stream ended before the run did, after %d events", len(evs))
		default:
		}
		releaseModels() // the run now fails; its terminal event ends the stream
		select {
		case evs := <-got:
			require.NotEmpty(t, evs)
			require.True(t, store.IsTerminalEvent(evs[len(evs)-1].Type), "the stream delivered the terminal event: %v", evs[len(evs)-1].Type)
		case <-time.After(60 * time.Second):
			t.Fatal("no terminal event within 60 s")
		}
	})
}

// TestStreamFloodMemory makes 1,500 concurrent stream attempts of one
// tenant (default quota: 100 streams) against a real orchestrator: exactly
// 100 are served and the rest refused with 429, the orchestrator's RSS
// stays under 300 MB, and another tenant creates a run while the
// accepted streams are held. (The 5,000-attempt flood and its latencies
// are in bench/streamflood.)
func TestStreamFloodMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const attempts = 1500
	raiseNoFile(t, attempts+256)
	mpURL, _ := hangingModelPolicy(t)
	node := testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}, Env: []string{
		"AGENTOS_MODEL_POLICY_URL=" + mpURL}})
	base := node.URL("orchestrator")
	admin := map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token}
	code, out := runsJSON(t, "POST", base+"/v1/agents/agt_sample_echo_v1/runs", map[string]string{"X-Tenant-Id": "tnt_demo"},
		map[string]any{"input": map[string]any{"type": "text", "text": "hi"}})
	require.Equal(t, 201, code, out)
	runID := out["run"].(map[string]any)["run_id"].(string)
	code, out = runsJSON(t, "POST", base+"/v1/admin/tenants", admin, map[string]any{"tenant_id": "tnt_other", "name": "Other"})
	require.Equal(t, 201, code, out)
	code, out = runsJSON(t, "PUT", base+"/v1/admin/agents/agt_other",
		map[string]string{"Authorization": admin["Authorization"], "X-Tenant-Id": "tnt_other"},
		map[string]any{"agent": map[string]any{"name": "other", "model_ref": "tier:fast", "instructions": "answer", "tools": []string{}}})
	require.True(t, code == 200 || code == 201, "%d %v", code, out)

	pid := node.PID("orchestrator")
	if _, err := readRSS(pid); err != nil {
		t.Skipf("cannot read the orchestrator's RSS: %v", err)
	}
	var peak float64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if v, err := readRSS(pid); err == nil {
				peak = max(peak, v)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: attempts, MaxIdleConns: attempts}}
	var mu sync.Mutex
	var held []streamAttempt
	counts := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < attempts; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := openStream(t.Context(), client, base, "tnt_demo", runID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				counts[-1]++
				return
			}
			counts[a.status]++
			if a.body != nil {
				held = append(held, a)
			}
		}()
	}
	wg.Wait()
	code, out = runsJSON(t, "POST", base+"/v1/agents/agt_other/runs", map[string]string{"X-Tenant-Id": "tnt_other"},
		map[string]any{"input": map[string]any{"type": "text", "text": "hi"}})
	close(stop)
	<-sampled
	closeAll(held)
	require.Equal(t, 201, code, "another tenant creates runs during the flood: %v", out)
	require.Equal(t, map[int]int{200: 100, 429: attempts - 100}, counts)
	t.Logf("orchestrator peak RSS during %d attempts: %.0f MB", attempts, peak)
	require.Less(t, peak, 300.0, "orchestrator RSS (MB)")
}
