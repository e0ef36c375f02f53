// Command ssefanout measures live SSE across orchestrator replicas and the
// memory an open SSE stream costs (issue 11).
//
// latency: against a running cluster (agentos up --profile cluster
// --replicas 2), each run is created on one replica (alternately A and B)
// and streamed at once from both. It reports create → first SSE event on
// the creating replica ("same") and on the other ("cross"), and, for
// every later (live) event, when it reached the other replica's stream
// minus when it reached the creating replica's ("added"): the delay the
// second replica adds to the same event.
//
//	go run ./bench/ssefanout latency -a http://127.0.0.1:53401 -b http://127.0.0.1:53411 -runs 3000 -clients 8
//
// memory: starts an orchestrator (the agentos binary, demo mode, SQLite,
// a temporary home) whose model-policy is a stand-in that holds every
// model call, so runs and their streams stay open; with -nats its bus is
// an embedded NATS server run by this command. It opens -streams idle SSE
// streams spread over -runs runs and reports the orchestrator's RSS
// (/proc/<pid>/status) and Go heap (go_memstats_heap_inuse_bytes from
// /metrics) before and after, per stream.
//
//	go build -o agentos ./cmd/agentos
//	go run ./bench/ssefanout memory -bin ./agentos -streams 5000 [-nats]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/natsd"
	"github.com/nexixai/agentos/internal/store"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ssefanout latency|memory [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "latency":
		err = latencyCmd(os.Args[2:])
	case "memory":
		err = memoryCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (latency or memory)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssefanout:", err)
		os.Exit(1)
	}
}

type client struct {
	token string
	hc    *http.Client
}

func (c *client) do(ctx context.Context, method, url, tenant string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	if tenant != "" {
		req.Header.Set("X-Tenant-Id", tenant)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// createRun creates a run, retrying while the tenant's create rate is
// exhausted.
func (c *client) createRun(ctx context.Context, base, tenant, agent string) (string, error) {
	for {
		status, body, err := c.do(ctx, "POST", base+"/v1/agents/"+agent+"/runs", tenant, map[string]any{"input": "fan out"})
		if err != nil {
			return "", err
		}
		if status == http.StatusTooManyRequests {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if status != http.StatusCreated {
			return "", fmt.Errorf("create run: %d %s", status, body)
		}
		var out struct {
			Run struct {
				RunID string `json:"run_id"`
			} `json:"run"`
		}
		return out.Run.RunID, json.Unmarshal(body, &out)
	}
}

func (c *client) openStream(ctx context.Context, base, tenant, runID string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/runs/"+runID+"/events", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("X-Tenant-Id", tenant)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("stream %s: %d %s", runID, resp.StatusCode, b)
	}
	return resp, nil
}

func adminToken(token string) (string, error) {
	if token != "" {
		return token, nil
	}
	cfg, err := config.Load(os.LookupEnv, "")
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(cfg.CredentialsFile())
	if err != nil {
		return "", fmt.Errorf("no -token and no credentials file: %w", err)
	}
	var c struct {
		PlatformAdmin struct{ Token string } `json:"platform_admin"`
	}
	return c.PlatformAdmin.Token, json.Unmarshal(b, &c)
}

// ---- latency

// arrivals is when each sequence of a run reached one stream.
type arrivals struct {
	first time.Duration // from the create request's start
	at    map[int64]time.Time
	err   error
}

func follow(ctx context.Context, c *client, base, tenant, runID string, t0 time.Time) arrivals {
	a := arrivals{at: map[int64]time.Time{}}
	resp, err := c.openStream(ctx, base, tenant, runID)
	if err != nil {
		a.err = err
		return a
	}
	defer resp.Body.Close()
	terminal := false
	a.err = events.ReadSSE(resp.Body, func(f events.Frame) error {
		now := time.Now()
		e, err := events.DecodeFrame(f)
		if err != nil {
			return err
		}
		if a.first == 0 {
			a.first = now.Sub(t0)
		}
		a.at[e.Sequence] = now
		terminal = terminal || store.IsTerminalEvent(e.Type)
		return nil
	})
	if a.err == nil && !terminal {
		a.err = errors.New("stream ended without a terminal event")
	}
	return a
}

func latencyCmd(args []string) error {
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	a := fs.String("a", "http://127.0.0.1:50081", "replica A's orchestrator URL")
	b := fs.String("b", "", "replica B's orchestrator URL")
	runs := fs.Int("runs", 3000, "runs")
	clients := fs.Int("clients", 8, "concurrent runs")
	agent := fs.String("agent", "agt_sample_echo_v1", "agent to run")
	token := fs.String("token", "", "platform admin token (default: from $AGENTOS_HOME/credentials.json)")
	_ = fs.Parse(args)
	if *b == "" {
		return errors.New("-b is required")
	}
	tok, err := adminToken(*token)
	if err != nil {
		return err
	}
	c := &client{token: tok, hc: &http.Client{Timeout: 2 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4 * *clients}}}
	ctx := context.Background()
	const tenant = "tnt_fanout"
	if err := prepareTenant(ctx, c, *a, tenant, *agent); err != nil {
		return err
	}
	bases := []string{strings.TrimSuffix(*a, "/"), strings.TrimSuffix(*b, "/")}
	var mu sync.Mutex
	var same, cross, added []time.Duration
	errCount := 0
	var firstErr error
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range *clients {
		wg.Go(func() {
			for i := range jobs {
				x, y := bases[i%2], bases[1-i%2]
				t0 := time.Now()
				runID, err := c.createRun(ctx, x, tenant, *agent)
				var got [2]arrivals
				if err == nil {
					var sw sync.WaitGroup
					for k, base := range []string{x, y} {
						sw.Go(func() { got[k] = follow(ctx, c, base, tenant, runID, t0) })
					}
					sw.Wait()
					err = errors.Join(got[0].err, got[1].err)
				}
				mu.Lock()
				if err != nil {
					errCount++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					same, cross = append(same, got[0].first), append(cross, got[1].first)
					for seq, atX := range got[0].at {
						// Sequence 1 (run.created) commits with the run: both
						// streams replay it from the store.
						if atY, ok := got[1].at[seq]; ok && seq > 1 {
							added = append(added, atY.Sub(atX))
						}
					}
				}
				mu.Unlock()
			}
		})
	}
	for i := range *runs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	wall := time.Since(start)
	fmt.Printf("## Cross-replica SSE (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Printf("%d runs of %s (%d at a time) in %.1f s, %d errors", *runs, *agent, *clients, wall.Seconds(), errCount)
	if firstErr != nil {
		fmt.Printf(" (first: %v)", firstErr)
	}
	fmt.Printf("; A %s, B %s.\n\n", bases[0], bases[1])
	fmt.Println("| measure | n | p50 | p95 | p99 | max |")
	fmt.Println("|---|---|---|---|---|---|")
	row("create → first event, stream on the creating replica", same)
	row("create → first event, stream on the other replica", cross)
	row("live event: other replica's stream minus creating replica's", added)
	return nil
}

func row(name string, d []time.Duration) {
	if len(d) == 0 {
		fmt.Printf("| %s | 0 | | | | |\n", name)
		return
	}
	slices.Sort(d)
	p := func(q float64) string {
		return fmt.Sprintf("%.2f ms", float64(d[int(q*float64(len(d)-1))].Microseconds())/1000)
	}
	fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", name, len(d), p(0.5), p(0.95), p(0.99), p(1))
}

func prepareTenant(ctx context.Context, c *client, base, tenant, agent string) error {
	quotas := map[string]any{
		"runs":   map[string]any{"run_create_qps": 100000, "run_create_burst": 100000, "max_concurrent_runs": 1000, "max_concurrent_streams": 100000},
		"tools":  map[string]any{"tool_calls_per_minute": 1000000},
		"models": map[string]any{"max_requests_per_minute": 1000000}}
	status, body, err := c.do(ctx, "POST", base+"/v1/admin/tenants", "", map[string]any{"tenant_create": map[string]any{
		"tenant_id": tenant, "name": tenant, "quotas": quotas}})
	if err != nil {
		return err
	}
	if status == http.StatusConflict {
		status, body, err = c.do(ctx, "PATCH", base+"/v1/admin/tenants/"+tenant, "", map[string]any{"status": "active", "quotas": quotas})
		if err != nil {
			return err
		}
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return fmt.Errorf("prepare tenant %s: %d %s", tenant, status, body)
	}
	if agent == "" {
		return nil
	}
	status, body, err = c.do(ctx, "GET", base+"/v1/agents/"+agent, "tnt_demo", nil)
	if err != nil || status != http.StatusOK {
		return fmt.Errorf("read agent %s of tnt_demo: %d %s %v", agent, status, body, err)
	}
	var got struct {
		Agent map[string]any `json:"agent"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return err
	}
	put := map[string]any{}
	for _, k := range []string{"name", "description", "model_ref", "instructions", "tools", "defaults"} {
		if v, ok := got.Agent[k]; ok {
			put[k] = v
		}
	}
	status, body, err = c.do(ctx, "PUT", base+"/v1/admin/agents/"+agent, tenant, map[string]any{"agent": put})
	if err != nil || status >= 300 {
		return fmt.Errorf("put agent %s in %s: %d %s %v", agent, tenant, status, body, err)
	}
	return nil
}

// ---- memory

func memoryCmd(args []string) error {
	fs := flag.NewFlagSet("memory", flag.ExitOnError)
	bin := fs.String("bin", "./agentos", "the agentos binary")
	addr := fs.String("addr", "127.0.0.1:52281", "orchestrator listen address")
	mpAddr := fs.String("model-policy-addr", "127.0.0.1:52282", "listen address of the stand-in model-policy")
	natsAddr := fs.String("nats-addr", "127.0.0.1:52283", "NATS client address (with -nats)")
	natsMon := fs.String("nats-monitor-addr", "127.0.0.1:52284", "NATS monitor address (with -nats)")
	useNATS := fs.Bool("nats", false, "the orchestrator's bus is NATS (an embedded server), not in-process")
	streams := fs.Int("streams", 1000, "idle SSE streams to open")
	runs := fs.Int("runs", 20, "open runs the streams are spread over")
	settle := fs.Duration("settle", 3*time.Second, "wait before each sample")
	_ = fs.Parse(args)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mp, err := net.Listen("tcp", *mpAddr)
	if err != nil {
		return err
	}
	go func() {
		_ = http.Serve(mp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/health") {
				_, _ = io.WriteString(w, `{"status":"ok"}`)
				return
			}
			<-r.Context().Done() // hold model calls: runs stay open
		}))
	}()
	home, err := os.MkdirTemp("", "ssefanout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	env := []string{"AGENTOS_HOME=" + home, "AGENTOS_MODE=demo", "AGENTOS_ORCHESTRATOR_ADDR=" + *addr,
		"AGENTOS_MODEL_POLICY_URL=http://" + *mpAddr, "AGENTOS_LOG_LEVEL=warn",
		"AGENTOS_QUOTA_MAX_STREAMS=" + strconv.Itoa(*streams+10), "AGENTOS_QUOTA_RUN_CREATE_QPS=1000"}
	if *useNATS {
		natsDone := make(chan error, 1)
		go func() {
			natsDone <- natsd.Run(ctx, natsd.Options{Name: "nats", Addr: *natsAddr, MonitorAddr: *natsMon,
				StoreDir: filepath.Join(home, "nats")}, func(string, ...any) {})
		}()
		if err := waitTCP(*natsAddr, natsDone); err != nil {
			return err
		}
		env = append(env, "AGENTOS_BUS_URL=nats://"+*natsAddr)
	}
	cmd := exec.Command(*bin, "serve", "orchestrator")
	cmd.Dir = home
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(home, "orchestrator.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	base := "http://" + *addr
	if err := waitHealthy(base); err != nil {
		b, _ := os.ReadFile(filepath.Join(home, "orchestrator.log"))
		return fmt.Errorf("%w\n%s", err, b)
	}
	var creds struct {
		PlatformAdmin struct{ Token string } `json:"platform_admin"`
	}
	b, err := os.ReadFile(filepath.Join(home, "credentials.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		return err
	}
	c := &client{token: creds.PlatformAdmin.Token, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	var ids []string
	for range *runs {
		id, err := c.createRun(ctx, base, "tnt_demo", "agt_sample_echo_v1")
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	pid := cmd.Process.Pid
	time.Sleep(*settle)
	rss0, heap0 := rssKB(pid), heapInuse(base)

	// Every stream on its own connection, opened a few at a time.
	sc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 1}}
	sclient := &client{token: c.token, hc: sc}
	var mu sync.Mutex
	var open []io.Closer
	var firstErr error
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	for i := range *streams {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			resp, err := sclient.openStream(ctx, base, "tnt_demo", ids[i%len(ids)])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			// Read the replayed event(s) in the background; the stream then
			// idles (heartbeats only).
			go func() { _, _ = io.Copy(io.Discard, bufio.NewReader(resp.Body)) }()
			open = append(open, resp.Body)
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("%d of %d streams open; first error: %w", len(open), *streams, firstErr)
	}
	time.Sleep(*settle)
	rss1, heap1 := rssKB(pid), heapInuse(base)
	n := float64(len(open))
	bus := "in-process bus"
	if *useNATS {
		bus = "NATS bus (one embedded server, in the harness process)"
	}
	fmt.Printf("## Idle SSE streams on one orchestrator (%s, %s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), bus)
	fmt.Printf("| streams | RSS before → after | RSS per stream | Go heap in use before → after | heap per stream |\n|---|---|---|---|---|\n")
	fmt.Printf("| %d | %.1f → %.1f MB | %.1f KB | %.1f → %.1f MB | %.1f KB |\n", len(open),
		float64(rss0)/1024, float64(rss1)/1024, float64(rss1-rss0)/n,
		float64(heap0)/(1<<20), float64(heap1)/(1<<20), float64(heap1-heap0)/1024/n)
	for _, b := range open {
		b.Close()
	}
	return nil
}

func waitTCP(addr string, failed <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-failed:
			return fmt.Errorf("nats: %w", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nats on %s not up after 30s", addr)
}

func waitHealthy(base string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("orchestrator at %s not ready after 60s", base)
}

// rssKB reads VmRSS of pid.
func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

// heapInuse reads go_memstats_heap_inuse_bytes from the orchestrator's
// /metrics.
func heapInuse(base string) int64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	return 0
}
