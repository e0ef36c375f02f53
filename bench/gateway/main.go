// Command gateway measures model-policy's overhead as a model gateway. It
// starts, in one process and on 127.0.0.1 only:
//
//   - a fake OpenAI-compatible backend (an httptest server answering every
//     POST /v1/chat/completions with the same chat completion and usage);
//   - model-policy with full governance on: a real SQLite store in a temp
//     directory, the real Authenticator (demo mode, X-Tenant-Id), a tenant
//     with entitlements, PII policy pol_default, a token budget large enough
//     never to run out (so every call reserves and settles budget), the
//     usage ledger and the audit log, and a model routed to that backend;
//
// then drives the same POST /v1/chat/completions through model-policy and
// directly against the backend, at 1 client and at 50 clients, each for the
// same duration, and prints a text report and a JSON report: throughput,
// p50/p99 for both, the added p50 at 1 client and the throughput ratio at
// 50 clients.
//
//	go run ./bench/gateway                       # 5 s per phase
//	go run ./bench/gateway -duration 10s -json out.json -cpuprofile cpu.out
//
// Goals (issue 4, the 2-core machine): added p50 at 1 client under 150 µs,
// and at 50 clients at least 50% of the direct throughput.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/node"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/modelpolicy"
)

const tenantID = "tnt_bench"

// completion is the fake backend's fixed answer.
const completion = `{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"The weather is mild and sunny today, with a light breeze from the west."},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":24,"completion_tokens":18,"total_tokens":42}}`

// requestBody is the call every client makes, directly and through the gateway.
const requestBody = `{"model":"bench/gpt-bench","messages":[{"role":"system","content":"You are a concise assistant."},` +
	`{"role":"user","content":"Hello! How is the weather today? Please answer in one sentence."}],"max_tokens":64}`

type options struct {
	duration   time.Duration
	warmup     time.Duration
	clients    []int
	jsonOut    string
	cpuProfile string
	blockProf  string
	profClient int
}

func main() {
	var o options
	var clients string
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured duration of each phase")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each phase")
	flag.StringVar(&clients, "clients", "1,50", "comma-separated client counts")
	flag.StringVar(&o.jsonOut, "json", "", "also write the JSON report to this file")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the gateway phase at the highest concurrency to this file")
	flag.IntVar(&o.profClient, "profile-clients", 0, "profile the gateway phase at this client count (default the highest)")
	flag.StringVar(&o.blockProf, "blockprofile", "", "write a blocking profile (channel, mutex and select waits) of the whole run to this file")
	flag.Parse()
	for _, c := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "gateway: -clients: %q is not a positive number\n", c)
			os.Exit(2)
		}
		o.clients = append(o.clients, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// phaseResult is one measured phase.
type phaseResult struct {
	Target     string  `json:"target"` // direct or gateway
	Clients    int     `json:"clients"`
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput_rps"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	// CPUusPerReq is the whole process's CPU time (load generator, gateway
	// and fake backend) per request: unlike throughput it does not depend
	// on what else the machine is running.
	CPUusPerReq float64 `json:"cpu_us_per_request"`
}

// report is the JSON report.
type report struct {
	GoVersion  string        `json:"go_version"`
	CPUs       int           `json:"cpus"`
	Duration   string        `json:"duration_per_phase"`
	Phases     []phaseResult `json:"phases"`
	AddedP50us float64       `json:"added_p50_us_at_1_client"`
	Ratio      float64       `json:"throughput_ratio_at_max_clients"`
	MaxClients int           `json:"max_clients"`
	GoalP50    bool          `json:"goal_added_p50_under_150us"`
	GoalRatio  bool          `json:"goal_ratio_at_least_50pct"`
}

func run(o options) error {
	if o.blockProf != "" {
		runtime.SetBlockProfileRate(10000) // sample one blocking event per 10 µs blocked
		defer func() {
			if f, err := os.Create(o.blockProf); err == nil {
				_ = pprof.Lookup("block").WriteTo(f, 0)
				_ = f.Close()
			}
		}()
	}
	backend := newBackend()
	defer backend.Close()

	dir, err := os.MkdirTemp("", "agentos-bench-gateway-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	gw, closeGW, err := startGateway(dir, backend.URL+"/v1")
	if err != nil {
		return err
	}
	defer closeGW()

	direct := backend.URL + "/v1/chat/completions"
	through := gw + "/v1/chat/completions"
	// Sanity: both answer 200 before anything is measured.
	client := newClient()
	for _, u := range []string{direct, through} {
		if err := call(client, u); err != nil {
			return fmt.Errorf("sanity call to %s: %w", u, err)
		}
	}

	maxClients := slices.Max(o.clients)
	if o.profClient == 0 {
		o.profClient = maxClients
	}
	rep := report{GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Duration: o.duration.String()}
	for _, c := range o.clients {
		for _, target := range []string{"direct", "gateway"} {
			u := direct
			if target == "gateway" {
				u = through
			}
			drive(client, u, c, o.warmup)
			// The CPU profile covers one gateway phase (-profile-clients).
			profiling := o.cpuProfile != "" && target == "gateway" && c == o.profClient
			if profiling {
				f, err := os.Create(o.cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
			}
			res := drive(client, u, c, o.duration)
			if profiling {
				pprof.StopCPUProfile()
			}
			res.Target = target
			rep.Phases = append(rep.Phases, res)
			fmt.Fprintf(os.Stderr, "%-8s clients=%-3d %8.0f req/s  p50 %8.1f µs  p99 %8.1f µs  cpu/req %7.1f µs  errors %d\n",
				target, c, res.Throughput, res.P50us, res.P99us, res.CPUusPerReq, res.Errors)
		}
	}
	find := func(target string, c int) (phaseResult, bool) {
		for _, p := range rep.Phases {
			if p.Target == target && p.Clients == c {
				return p, true
			}
		}
		return phaseResult{}, false
	}
	if d, ok := find("direct", 1); ok {
		g, _ := find("gateway", 1)
		rep.AddedP50us = g.P50us - d.P50us
		rep.GoalP50 = rep.AddedP50us < 150
	}
	rep.MaxClients = maxClients
	if d, ok := find("direct", rep.MaxClients); ok && d.Throughput > 0 {
		g, _ := find("gateway", rep.MaxClients)
		rep.Ratio = g.Throughput / d.Throughput
		rep.GoalRatio = rep.Ratio >= 0.5
	}
	printText(os.Stdout, rep)
	js, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Println(string(js))
	if o.jsonOut != "" {
		if err := os.WriteFile(o.jsonOut, append(js, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func printText(w io.Writer, rep report) {
	fmt.Fprintf(w, "\nmodel-policy gateway overhead (%s, %d CPUs, %s per phase)\n\n", rep.GoVersion, rep.CPUs, rep.Duration)
	fmt.Fprintf(w, "%-8s %7s %10s %12s %12s %14s %8s\n", "target", "clients", "req/s", "p50 µs", "p99 µs", "cpu/req µs", "errors")
	for _, p := range rep.Phases {
		fmt.Fprintf(w, "%-8s %7d %10.0f %12.1f %12.1f %14.1f %8d\n", p.Target, p.Clients, p.Throughput, p.P50us, p.P99us, p.CPUusPerReq, p.Errors)
	}
	ok := func(b bool) string {
		if b {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "\nadded p50 at 1 client: %.1f µs (goal < 150 µs: %s)\n", rep.AddedP50us, ok(rep.GoalP50))
	fmt.Fprintf(w, "throughput ratio at %d clients: %.1f%% of direct (goal >= 50%%: %s)\n\n", rep.MaxClients, 100*rep.Ratio, ok(rep.GoalRatio))
}

// newBackend is the fake OpenAI-compatible backend.
func newBackend() *httptest.Server {
	body := []byte(completion)
	models := []byte(`{"object":"list","data":[{"id":"gpt-bench","object":"model"}]}`)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
			_, _ = w.Write(body)
		case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
			_, _ = w.Write(models)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"message":"not found"}}`))
		}
	}))
}

// startGateway starts model-policy with full governance on 127.0.0.1:0 and
// returns its base URL and a function stopping it (flushing the ledger,
// audit and budget).
func startGateway(dir, backendURL string) (string, func(), error) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "agentos.db"))
	if err != nil {
		return "", nil, err
	}
	now := time.Now().UTC()
	err = db.CreateTenant(ctx, store.Tenant{TenantID: tenantID, Name: "bench", Status: store.TenantActive, PlanTier: "standard",
		DefaultPolicyID: "pol_default", CreatedAt: now, UpdatedAt: now,
		Entitlements: store.Entitlements{ModelTiersAllowed: []string{"balanced", "fast"}, ModelBackendsAllowed: []string{"bench", "builtin"},
			ToolIDsAllowed: []string{"*"}},
		Quotas: store.Quotas{Models: store.ModelQuotas{MaxTokensPerRequest: 100000,
			TokenBudget: store.TokenBudget{Window: "day", MaxTokens: 1 << 40, MaxCostUSD: 1 << 30}}}})
	if err != nil {
		_ = db.Close()
		return "", nil, err
	}
	cat, err := modelpolicy.ParseCatalogue([]byte(fmt.Sprintf(`
backends:
  - {name: builtin, type: builtin}
  - {name: bench, type: openai, base_url: %q}
models:
  - {name: gpt-bench, backend: bench, tiers: [balanced], context_window_tokens: 32768, max_output_tokens: 1024,
     price_per_1k_input_usd: 0.0005, price_per_1k_output_usd: 0.0015}
  - {name: echo-fast, backend: builtin, tiers: [fast]}
tiers:
  balanced: [bench/gpt-bench]
  fast: [builtin/echo-fast]
default_policy: pol_default
`, backendURL)))
	if err != nil {
		_ = db.Close()
		return "", nil, err
	}
	tenants := modelpolicy.NewTenantCache(db, time.Second)
	authn, err := auth.New(auth.Config{Mode: auth.ModeDemo, Tenants: tenants, Tokens: db})
	if err != nil {
		_ = db.Close()
		return "", nil, err
	}
	// Info-level JSON access logs, as the node writes them, to a discarded writer.
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := modelpolicy.New(modelpolicy.Config{Store: db, Tenants: tenants, Authenticate: authn.Middleware,
		Audit: audit.New(db, nil), Catalogue: cat, Registry: prometheus.NewRegistry(), Logger: logger,
		NodeID: "bench", DefaultInvokeQPS: 1e9, Version: "bench"})
	if err != nil {
		_ = db.Close()
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = db.Close()
		return "", nil, err
	}
	if err := srv.Start(); err != nil {
		_ = db.Close()
		return "", nil, err
	}
	// Served as the node serves it (its server limits and drain).
	sctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- node.ServeListener(sctx, config.Config{Mode: config.ModeDemo}, ln, srv.Handler(), logger)
	}()
	stop := func() {
		cancel()
		if err := <-served; err != nil {
			fmt.Fprintln(os.Stderr, "gateway: serve:", err)
		}
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "gateway: stop:", err)
		}
		u, err := db.BudgetUsage(context.Background(), tenantID, "day", time.Now().UTC().Truncate(24*time.Hour))
		if err == nil {
			recs, _ := db.ListUsage(context.Background(), store.UsageFilter{TenantID: tenantID})
			fmt.Fprintf(os.Stderr, "gateway: ledger has %d usage records, %d settled tokens\n", len(recs), u.UsedTokens)
		}
		_ = db.Close()
	}
	return "http://" + ln.Addr().String(), stop, nil
}

func newClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 512
	tr.MaxIdleConnsPerHost = 512
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

var errStatus = errors.New("unexpected status")

func call(c *http.Client, url string) error {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(requestBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tenant-Id", tenantID)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = io.Copy(&buf, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w %d: %s", errStatus, resp.StatusCode, buf.String())
	}
	return nil
}

// drive runs clients concurrent loops against url for d and measures each call.
func drive(c *http.Client, url string, clients int, d time.Duration) phaseResult {
	var mu sync.Mutex
	var all []time.Duration
	errCount := 0
	var firstErr error
	deadline := time.Now().Add(d)
	start := time.Now()
	cpu0 := cpuTime()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			errs := 0
			var ferr error
			for time.Now().Before(deadline) {
				t0 := time.Now()
				err := call(c, url)
				if err != nil {
					errs++
					if ferr == nil {
						ferr = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errCount += errs
			if firstErr == nil {
				firstErr = ferr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "gateway: first error:", firstErr)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p * float64(len(all)-1))
		return float64(all[i].Nanoseconds()) / 1000
	}
	return phaseResult{Clients: clients, Requests: len(all), Errors: errCount, Seconds: elapsed.Seconds(),
		Throughput: float64(len(all)) / elapsed.Seconds(), P50us: pct(0.50), P99us: pct(0.99),
		CPUusPerReq: float64(cpu.Microseconds()) / float64(max(1, len(all)))}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
