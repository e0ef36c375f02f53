// Command tokenstream measures what token streaming (run create
// stream.tokens) costs a node: completed runs per second with and without
// it, run latency, the time from create to the first model text a client
// sees, and the delta events per run. Each run is created and followed to
// its terminal event through the typed client (internal/apiclient), by
// -clients clients at once; the two modes alternate for -rounds rounds so
// that noise on a shared machine falls on both.
//
// It needs a running node (orchestrator + model-policy) and its platform
// admin token ($AGENTOS_HOME/credentials.json or -token) to raise the
// tenant's run and tool quotas; start model-policy with a high
// AGENTOS_QUOTA_INVOKE_QPS so the harness measures the node, not the
// limiter.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/store"
)

type options struct {
	url, token, tenant, agent, out string
	runs, clients, rounds          int
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:50081", "orchestrator base URL")
	flag.StringVar(&o.token, "token", "", "platform admin token (default: from $AGENTOS_HOME/credentials.json)")
	flag.StringVar(&o.tenant, "tenant", "tnt_demo", "tenant to run in (its quotas are raised)")
	flag.StringVar(&o.agent, "agent", "agt_sample_echo_v1", "agent to run")
	flag.StringVar(&o.out, "out", "bench/tokenstream-report", "write the report to OUT.md and OUT.json")
	flag.IntVar(&o.runs, "runs", 300, "runs per mode and round")
	flag.IntVar(&o.clients, "clients", 8, "concurrent clients")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds (each measures both modes)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "tokenstream:", err)
		os.Exit(1)
	}
}

// Report is the JSON report.
type Report struct {
	Date    string `json:"date"`
	Target  string `json:"target"`
	Agent   string `json:"agent"`
	Clients int    `json:"clients"`
	Rounds  int    `json:"rounds"`
	Plain   Mode   `json:"plain"`
	Tokens  Mode   `json:"stream_tokens"`
}

// Mode is the measurement of one mode over every round.
type Mode struct {
	Runs           int       `json:"runs"`
	PerSecond      []float64 `json:"runs_per_second_by_round"`
	MedianPerSec   float64   `json:"runs_per_second_median"`
	TerminalP50Ms  float64   `json:"create_to_terminal_p50_ms"`
	TerminalP99Ms  float64   `json:"create_to_terminal_p99_ms"`
	FirstTextP50Ms float64   `json:"create_to_first_text_p50_ms"`
	FirstTextP99Ms float64   `json:"create_to_first_text_p99_ms"`
	EventsPerRun   float64   `json:"events_per_run"`
	DeltasPerRun   float64   `json:"delta_events_per_run"`
	Errors         int       `json:"errors"`
	FirstError     string    `json:"first_error,omitempty"`
}

type sample struct {
	terminal, firstText time.Duration
	events, deltas      int
	err                 error
}

func run(o options) error {
	if o.token == "" {
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
	ctx := context.Background()
	admin := &apiclient.Client{BaseURL: o.url, Token: o.token}
	if _, err := admin.PatchTenant(ctx, o.tenant, map[string]any{"quotas": map[string]any{
		"runs":  map[string]any{"run_create_qps": 100000, "run_create_burst": 100000, "max_concurrent_runs": 1000},
		"tools": map[string]any{"tool_calls_per_minute": 1000000},
	}}); err != nil {
		return fmt.Errorf("raise the quotas of %s: %w", o.tenant, err)
	}
	c := &apiclient.Client{BaseURL: o.url, Token: o.token, TenantID: o.tenant}
	rep := Report{Date: time.Now().UTC().Format(time.RFC3339), Target: o.url, Agent: o.agent, Clients: o.clients, Rounds: o.rounds}
	var plain, tokens []sample
	// A warm-up round for both modes, not counted.
	measure(ctx, c, o, false, o.clients)
	measure(ctx, c, o, true, o.clients)
	for r := range o.rounds {
		for _, streaming := range []bool{false, true} {
			start := time.Now()
			ss := measure(ctx, c, o, streaming, o.runs)
			rate := float64(len(ss)) / time.Since(start).Seconds()
			fmt.Fprintf(os.Stderr, "round %d stream.tokens=%v: %.1f runs/s\n", r+1, streaming, rate)
			if streaming {
				tokens = append(tokens, ss...)
				rep.Tokens.PerSecond = append(rep.Tokens.PerSecond, rate)
			} else {
				plain = append(plain, ss...)
				rep.Plain.PerSecond = append(rep.Plain.PerSecond, rate)
			}
		}
	}
	summarize(&rep.Plain, plain)
	summarize(&rep.Tokens, tokens)
	return write(o.out, rep)
}

// measure runs n runs with o.clients clients.
func measure(ctx context.Context, c *apiclient.Client, o options, streaming bool, n int) []sample {
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	var mu sync.Mutex
	var out []sample
	var wg sync.WaitGroup
	for range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				s := one(ctx, c, o.agent, streaming)
				mu.Lock()
				out = append(out, s)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// one creates a run and follows it to its end. First text is the first
// delta with stream.tokens, else the model.completed of the run's answer
// (its last model call).
func one(ctx context.Context, c *apiclient.Client, agent string, streaming bool) sample {
	var opts []apiclient.RunOption
	if streaming {
		opts = append(opts, apiclient.WithTokenStream())
	}
	start := time.Now()
	run, err := c.CreateRun(ctx, agent, "measure the cost of streaming tokens, please", nil, opts...)
	if err != nil {
		return sample{err: err}
	}
	var s sample
	var lastModel time.Duration
	err = c.StreamEvents(ctx, run.RunID, 0, func(e store.Event) error {
		s.events++
		switch e.Type {
		case store.EventModelDelta:
			if s.deltas == 0 {
				s.firstText = time.Since(start)
			}
			s.deltas++
		case store.EventModelCompleted:
			lastModel = time.Since(start)
		case store.EventRunFailed, store.EventRunCanceled:
			return fmt.Errorf("run %s ended %s: %s", run.RunID, e.Type, e.Payload)
		}
		return nil
	})
	s.terminal = time.Since(start)
	if !streaming {
		s.firstText = lastModel
	}
	s.err = err
	return s
}

func summarize(m *Mode, ss []sample) {
	var term, first []float64
	var events, deltas int
	for _, s := range ss {
		if s.err != nil {
			m.Errors++
			if m.FirstError == "" {
				m.FirstError = s.err.Error()
			}
			continue
		}
		m.Runs++
		term = append(term, ms(s.terminal))
		first = append(first, ms(s.firstText))
		events += s.events
		deltas += s.deltas
	}
	m.MedianPerSec = pct(slices.Clone(m.PerSecond), 50)
	m.TerminalP50Ms, m.TerminalP99Ms = pct(term, 50), pct(term, 99)
	m.FirstTextP50Ms, m.FirstTextP99Ms = pct(first, 50), pct(first, 99)
	if m.Runs > 0 {
		m.EventsPerRun = float64(events) / float64(m.Runs)
		m.DeltasPerRun = float64(deltas) / float64(m.Runs)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(v []float64, p int) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[min(len(v)-1, len(v)*p/100)]
}

func write(out string, rep Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out+".json", append(b, '\n'), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# Token streaming overhead (bench/tokenstream)\n\n%s, %s, agent %s, %d clients, %d rounds (modes alternate; median of the rounds).\n\n",
		rep.Date, rep.Target, rep.Agent, rep.Clients, rep.Rounds)
	md.WriteString("| mode | runs/s (median; by round) | create→terminal p50 / p99 | create→first text p50 / p99 | events/run | delta events/run | errors |\n|---|---|---|---|---|---|---|\n")
	for _, r := range []struct {
		name string
		m    Mode
	}{{"plain", rep.Plain}, {"stream.tokens", rep.Tokens}} {
		by := make([]string, len(r.m.PerSecond))
		for i, v := range r.m.PerSecond {
			by[i] = fmt.Sprintf("%.1f", v)
		}
		fmt.Fprintf(&md, "| %s | %.1f (%s) | %.1f / %.1f ms | %.1f / %.1f ms | %.1f | %.1f | %d |\n", r.name, r.m.MedianPerSec,
			strings.Join(by, ", "), r.m.TerminalP50Ms, r.m.TerminalP99Ms, r.m.FirstTextP50Ms, r.m.FirstTextP99Ms, r.m.EventsPerRun, r.m.DeltasPerRun, r.m.Errors)
	}
	return os.WriteFile(out+".md", []byte(md.String()), 0o644)
}
