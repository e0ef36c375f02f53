// Command runload is the load harness for the runs path: it creates runs
// for several tenants against a running node, follows each to its terminal
// state over SSE, and reports admission latency, end-to-end run latency
// and throughput as Markdown.
//
//	go run ./bench/runload -url http://127.0.0.1:50081 -tenants 4 -runs 400 -concurrency 16
//
// It needs the platform admin token from $AGENTOS_HOME/credentials.json (or
// -token) to create its tenants (tnt_load_0..N-1) with quotas high enough
// that the harness measures the node, not the rate limiter.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
)

type options struct {
	url, token, agent, out       string
	clients, admitRuns           int
	grow, latencyRuns, e2e, gets int
	pids                         []int
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:50081", "orchestrator base URL")
	flag.StringVar(&o.token, "token", "", "platform admin token (default: from $AGENTOS_HOME/credentials.json)")
	flag.StringVar(&o.agent, "agent", "agt_sample_echo_v1", "agent to run (put in every load tenant)")
	flag.StringVar(&o.out, "out", "bench/runload-report", "write the report to OUT.md and OUT.json")
	flag.IntVar(&o.clients, "clients", 50, "concurrent clients")
	flag.IntVar(&o.admitRuns, "admit", 2000, "runs created per admission measurement")
	flag.IntVar(&o.grow, "grow", 100000, "runs in the store before the second admission measurement")
	flag.IntVar(&o.latencyRuns, "latency", 200, "runs for the one-client latency measurement")
	flag.IntVar(&o.e2e, "e2e", 2000, "runs for the completed-runs/s measurement")
	flag.Func("pid", "a server process whose CPU time per operation is reported (repeatable)", func(v string) error {
		n, err := strconv.Atoi(v)
		o.pids = append(o.pids, n)
		return err
	})
	flag.IntVar(&o.gets, "get", 20000, "GET /v1/runs/{id} requests on the latency phase's finished runs")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "runload:", err)
		os.Exit(1)
	}
}

// Report is the JSON report.
type Report struct {
	Date       string  `json:"date"`
	Target     string  `json:"target"`
	Clients    int     `json:"clients"`
	AdmitFirst Phase   `json:"admission_first"`
	AdmitGrown Phase   `json:"admission_after_growth"`
	StoreRuns  int     `json:"store_runs_before_second_measurement"`
	FirstEvent Latency `json:"create_to_first_event"`
	Terminal   Latency `json:"create_to_terminal"`
	Completed  Phase   `json:"completed_runs"`
	GetRun     Phase   `json:"get_run"`
}

// Phase is a throughput measurement.
type Phase struct {
	Runs       int     `json:"runs"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	// ServerCPUUs is the CPU time (user + system) the -pid processes
	// spent during the phase per operation, in µs: unlike throughput it
	// hardly moves with what else the machine runs.
	ServerCPUUs float64 `json:"server_cpu_us_per_op,omitempty"`
}

// Latency is a one-client latency distribution.
type Latency struct {
	Runs  int     `json:"runs"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

func run(o options) error {
	if o.token == "" {
		// The node's credentials file, found as the agentos CLI finds it.
		cfg, err := config.Load(os.LookupEnv, "")
		if err != nil {
			return err
		}
		b, err := os.ReadFile(cfg.CredentialsFile())
		if err != nil {
			return fmt.Errorf("no -token and no credentials file: %w", err)
		}
		var c struct {
			PlatformAdmin struct{ Token string } `json:"platform_admin"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return err
		}
		o.token = c.PlatformAdmin.Token
	}
	c := &client{pids: o.pids, base: strings.TrimSuffix(o.url, "/"), token: o.token, http: &http.Client{
		Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * o.clients}}}
	ctx := context.Background()
	// Admission runs wait in a tenant that executes one run at a time (and
	// is paused after the admission phases), so the measurement is
	// admission, not execution.
	if err := c.prepareTenant(ctx, "tnt_load_admit", o.agent, 1); err != nil {
		return err
	}
	if err := c.prepareTenant(ctx, "tnt_load_exec", o.agent, 1000); err != nil {
		return err
	}
	rep := Report{Date: time.Now().UTC().Format(time.RFC3339), Target: o.url, Clients: o.clients}
	fmt.Fprintf(os.Stderr, "admission: %d runs, %d clients\n", o.admitRuns, o.clients)
	rep.AdmitFirst = c.admit(ctx, o, o.admitRuns)
	if grow := o.grow - 2*o.admitRuns; grow > 0 {
		fmt.Fprintf(os.Stderr, "growing the store by %d runs\n", grow)
		c.admit(ctx, o, grow)
	}
	rep.StoreRuns = max(o.grow, 2*o.admitRuns) - o.admitRuns
	fmt.Fprintf(os.Stderr, "admission again after growth\n")
	rep.AdmitGrown = c.admit(ctx, o, o.admitRuns)
	// Pause the admission tenant: its runs stay queued instead of taking
	// CPU from the latency and throughput measurements.
	if status, body, err := c.do(ctx, "PATCH", "/v1/admin/tenants/tnt_load_admit", "", map[string]any{"status": "disabled"}); err != nil || status != http.StatusOK {
		return fmt.Errorf("pause tnt_load_admit: %d %s %v", status, body, err)
	}

	fmt.Fprintf(os.Stderr, "latency: %d runs, one client\n", o.latencyRuns)
	var first, term []time.Duration
	var finished []string
	for i := 0; i < o.latencyRuns; i++ {
		id, f, t, err := c.timedRun(ctx, "tnt_load_exec", o.agent, fmt.Sprintf("latency %d", i))
		if err != nil {
			return err
		}
		first, term = append(first, f), append(term, t)
		finished = append(finished, id)
	}
	rep.FirstEvent = latency(first)
	rep.Terminal = latency(term)

	fmt.Fprintf(os.Stderr, "completed runs/s: %d runs, %d clients\n", o.e2e, o.clients)
	rep.Completed = c.phase(o.clients, o.e2e, func(i int) error {
		_, _, _, err := c.timedRun(ctx, "tnt_load_exec", o.agent, fmt.Sprintf("e2e %d", i))
		return err
	})
	if o.gets > 0 && len(finished) > 0 {
		fmt.Fprintf(os.Stderr, "GET /v1/runs/{id}: %d requests on %d finished runs, %d clients\n", o.gets, len(finished), o.clients)
		rep.GetRun = c.phase(o.clients, o.gets, func(i int) error {
			status, body, err := c.do(ctx, "GET", "/v1/runs/"+finished[i%len(finished)], "tnt_load_exec", nil)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("get run: %d %s", status, body)
			}
			return err
		})
	}
	md := markdown(rep, o)
	fmt.Print(md)
	if o.out != "" {
		j, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.out+".json", append(j, '\n'), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(o.out+".md", []byte(md), 0o644); err != nil {
			return err
		}
	}
	if rep.AdmitFirst.Errors+rep.AdmitGrown.Errors+rep.Completed.Errors+rep.GetRun.Errors > 0 {
		return fmt.Errorf("some runs failed (see the report)")
	}
	return nil
}

func (c *client) admit(ctx context.Context, o options, n int) Phase {
	return c.phase(o.clients, n, func(i int) error {
		_, err := c.createRun(ctx, "tnt_load_admit", o.agent, fmt.Sprintf("admit %d", i))
		return err
	})
}

// phase runs fn n times from clients goroutines and measures it.
func (c *client) phase(clients, n int, fn func(i int) error) Phase {
	lat := make([]time.Duration, n)
	errsSeen := make([]error, n)
	jobs := make(chan int, n)
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	var wg sync.WaitGroup
	cpu0 := c.serverCPU()
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				t0 := time.Now()
				errsSeen[i] = fn(i)
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	p := Phase{Runs: n, Seconds: wall.Seconds()}
	if len(c.pids) > 0 && n > 0 {
		p.ServerCPUUs = float64((c.serverCPU() - cpu0).Microseconds()) / float64(n)
	}
	var ok []time.Duration
	for i, err := range errsSeen {
		if err != nil {
			p.Errors++
			if p.FirstError == "" {
				p.FirstError = err.Error()
			}
			continue
		}
		ok = append(ok, lat[i])
	}
	p.PerSecond = float64(len(ok)) / wall.Seconds()
	l := latency(ok)
	p.P50Ms, p.P99Ms = l.P50Ms, l.P99Ms
	return p
}

func latency(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds()) / 1000
	}
	return Latency{Runs: len(ds), P50Ms: q(0.5), P99Ms: q(0.99)}
}

func markdown(r Report, o options) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# runload report\n\n- date: %s\n- target: %s (agent %s)\n- clients: %d\n\n", r.Date, r.Target, o.agent, r.Clients)
	fmt.Fprintf(&sb, "| measurement | runs | per second | p50 | p99 | errors | server CPU µs per op |\n|---|---|---|---|---|---|---|\n")
	row := func(name string, p Phase) {
		fmt.Fprintf(&sb, "| %s | %d | %.0f | %.2f ms | %.2f ms | %d | %.0f |\n", name, p.Runs, p.PerSecond, p.P50Ms, p.P99Ms, p.Errors, p.ServerCPUUs)
	}
	row("run creation, empty store", r.AdmitFirst)
	row(fmt.Sprintf("run creation, %d runs stored", r.StoreRuns), r.AdmitGrown)
	row("sample agent, created and followed to completion", r.Completed)
	row("GET /v1/runs/{id}, finished runs", r.GetRun)
	fmt.Fprintf(&sb, "\n| one client, sample agent | p50 | p99 |\n|---|---|---|\n")
	fmt.Fprintf(&sb, "| create → first SSE event | %.2f ms | %.2f ms |\n", r.FirstEvent.P50Ms, r.FirstEvent.P99Ms)
	fmt.Fprintf(&sb, "| create → terminal event | %.2f ms | %.2f ms |\n", r.Terminal.P50Ms, r.Terminal.P99Ms)
	for _, p := range []Phase{r.AdmitFirst, r.AdmitGrown, r.Completed, r.GetRun} {
		if p.FirstError != "" {
			fmt.Fprintf(&sb, "\nfirst error: %s\n", p.FirstError)
		}
	}
	return sb.String()
}

// serverCPU is the user + system CPU time of the -pid processes so far
// (/proc/PID/stat, in clock ticks of 10 ms).
func (c *client) serverCPU() time.Duration {
	var total time.Duration
	for _, pid := range c.pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command (which may hold spaces), from ") ":
		// state is field 3, utime 14 and stime 15.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}

type client struct {
	pids        []int
	base, token string
	http        *http.Client
}

func (c *client) do(ctx context.Context, method, path, tenant string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	if tenant != "" {
		req.Header.Set("X-Tenant-Id", tenant)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (c *client) prepareTenant(ctx context.Context, id, agent string, concurrent int) error {
	status, body, err := c.do(ctx, "POST", "/v1/admin/tenants", "", map[string]any{"tenant_create": map[string]any{
		"tenant_id": id, "name": "load " + id,
		"quotas": map[string]any{"runs": map[string]any{"run_create_qps": 100000, "run_create_burst": 100000, "max_concurrent_runs": concurrent},
			"tools":  map[string]any{"tool_calls_per_minute": 1000000},
			"models": map[string]any{"max_requests_per_minute": 1000000}}}})
	if err != nil {
		return err
	}
	if status == http.StatusConflict { // from an earlier run of the harness: reset its quotas
		status, body, err = c.do(ctx, "PATCH", "/v1/admin/tenants/"+id, "", map[string]any{"status": "active", "quotas": map[string]any{
			"runs": map[string]any{"run_create_qps": 100000, "run_create_burst": 100000, "max_concurrent_runs": concurrent}}})
		if err != nil {
			return err
		}
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return fmt.Errorf("create tenant %s: %d %s", id, status, body)
	}
	status, body, err = c.do(ctx, "PUT", "/v1/admin/agents/"+agent, id, map[string]any{"agent": map[string]any{
		"name": "load echo", "model_ref": "tier:fast", "tools": []string{"tool.echo"},
		"instructions": "Call tool.echo with the user's text, then answer with what it returned."}})
	if err != nil {
		return err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return fmt.Errorf("put agent in %s: %d %s", id, status, body)
	}
	return nil
}

func (c *client) createRun(ctx context.Context, tenant, agent, text string) (string, error) {
	status, body, err := c.do(ctx, "POST", "/v1/agents/"+agent+"/runs", tenant, map[string]any{"input": text})
	if err != nil {
		return "", err
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

var errNoTerminal = errors.New("stream ended without a terminal event")

// timedRun creates a run, opens its event stream at once and returns the
// time from the create request to the first event and to the terminal one.
func (c *client) timedRun(ctx context.Context, tenant, agent, text string) (runID string, first, terminal time.Duration, err error) {
	t0 := time.Now()
	runID, err = c.createRun(ctx, tenant, agent, text)
	if err != nil {
		return "", 0, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/runs/"+runID+"/events", nil)
	if err != nil {
		return runID, 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("X-Tenant-Id", tenant)
	resp, err := c.http.Do(req)
	if err != nil {
		return runID, 0, 0, err
	}
	defer resp.Body.Close()
	status := ""
	err = events.ReadSSE(resp.Body, func(f events.Frame) error {
		e, err := events.DecodeFrame(f)
		if err != nil {
			return err
		}
		if first == 0 {
			first = time.Since(t0)
		}
		if store.IsTerminalEvent(e.Type) {
			terminal = time.Since(t0)
			status = e.Type
		}
		return nil
	})
	if err == nil && status == "" {
		err = errNoTerminal
	}
	if err == nil && status != store.EventRunCompleted {
		err = fmt.Errorf("run %s ended with %s", runID, status)
	}
	return runID, first, terminal, err
}
