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
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
)

type options struct {
	url, token, agent, out string
	tenants, runs, conc    int
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:50081", "orchestrator base URL")
	flag.StringVar(&o.token, "token", "", "platform admin token (default: from $AGENTOS_HOME/credentials.json)")
	flag.StringVar(&o.agent, "agent", "agt_sample_echo_v1", "agent to run (seeded in every load tenant)")
	flag.StringVar(&o.out, "out", "", "also write the report to this file")
	flag.IntVar(&o.tenants, "tenants", 4, "number of tenants")
	flag.IntVar(&o.runs, "runs", 200, "total runs")
	flag.IntVar(&o.conc, "concurrency", 16, "concurrent clients")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "runload:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.token == "" {
		home := os.Getenv("AGENTOS_HOME")
		if home == "" {
			home = ".agentos"
		}
		b, err := os.ReadFile(filepath.Join(home, "credentials.json"))
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
	c := &client{base: strings.TrimSuffix(o.url, "/"), token: o.token, http: &http.Client{Timeout: 2 * time.Minute}}
	ctx := context.Background()
	for i := 0; i < o.tenants; i++ {
		if err := c.prepareTenant(ctx, fmt.Sprintf("tnt_load_%d", i), o.agent); err != nil {
			return err
		}
	}
	type result struct {
		admit, total time.Duration
		status       string
		err          error
	}
	results := make([]result, o.runs)
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < o.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				tenant := fmt.Sprintf("tnt_load_%d", i%o.tenants)
				t0 := time.Now()
				runID, err := c.createRun(ctx, tenant, o.agent, fmt.Sprintf("load %d", i))
				if err != nil {
					results[i] = result{err: err}
					continue
				}
				admit := time.Since(t0)
				status, err := c.follow(ctx, tenant, runID)
				results[i] = result{admit: admit, total: time.Since(t0), status: status, err: err}
			}
		}()
	}
	for i := 0; i < o.runs; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	wall := time.Since(start)

	var admits, totals []time.Duration
	outcomes := map[string]int{}
	var firstErr error
	for _, r := range results {
		if r.err != nil {
			outcomes["error"]++
			if firstErr == nil {
				firstErr = r.err
			}
			continue
		}
		outcomes[r.status]++
		admits = append(admits, r.admit)
		totals = append(totals, r.total)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "# runload report\n\n- date: %s\n- target: %s\n- agent: %s\n- tenants: %d, runs: %d, concurrency: %d\n- wall time: %s\n- throughput: %.1f runs/s (created and followed to a terminal state)\n- outcomes: %v\n\n",
		time.Now().UTC().Format(time.RFC3339), o.url, o.agent, o.tenants, o.runs, o.conc, wall.Round(time.Millisecond),
		float64(len(totals))/wall.Seconds(), outcomes)
	fmt.Fprintf(&sb, "| latency | p50 | p90 | p99 | max |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&sb, "| admission (POST /runs) | %s |\n", quantiles(admits))
	fmt.Fprintf(&sb, "| end to end (create → terminal event) | %s |\n", quantiles(totals))
	if firstErr != nil {
		fmt.Fprintf(&sb, "\nfirst error: %v\n", firstErr)
	}
	fmt.Print(sb.String())
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(sb.String()), 0o644); err != nil {
			return err
		}
	}
	if outcomes["error"] > 0 {
		return fmt.Errorf("%d runs failed to be created or followed", outcomes["error"])
	}
	return nil
}

func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "- | - | - | -"
	}
	slices.Sort(ds)
	q := func(p float64) time.Duration {
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("%s | %s | %s | %s", q(0.5), q(0.9), q(0.99), ds[len(ds)-1].Round(100*time.Microsecond))
}

type client struct {
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

func (c *client) prepareTenant(ctx context.Context, id, agent string) error {
	status, body, err := c.do(ctx, "POST", "/v1/admin/tenants", "", map[string]any{"tenant_create": map[string]any{
		"tenant_id": id, "name": "load " + id,
		"quotas": map[string]any{"runs": map[string]any{"run_create_qps": 10000, "run_create_burst": 10000, "max_concurrent_runs": 1000},
			"tools":  map[string]any{"tool_calls_per_minute": 1000000},
			"models": map[string]any{"max_requests_per_minute": 1000000}}}})
	if err != nil {
		return err
	}
	if status != http.StatusCreated && status != http.StatusConflict {
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

func (c *client) follow(ctx context.Context, tenant, runID string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/runs/"+runID+"/events", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("X-Tenant-Id", tenant)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	status := ""
	err = events.ReadSSE(resp.Body, func(f events.Frame) error {
		e, err := events.DecodeFrame(f)
		if err != nil {
			return err
		}
		if store.IsTerminalEvent(e.Type) {
			status = strings.TrimPrefix(e.Type, "agentos.run.")
		}
		return nil
	})
	if err == nil && status == "" {
		err = errNoTerminal
	}
	return status, err
}
