// Command streamflood is the load harness for the event stream caps (issue
// 10): it starts an orchestrator (the agentos binary, demo mode, a
// temporary home) whose model-policy is a stand-in that holds every model
// call, so runs stay open and so do their event streams; then one tenant
// makes -attempts concurrent SSE attempts on one of its runs while another
// tenant keeps creating runs. It reports how the attempts were answered,
// the orchestrator's RSS (from /proc/<pid>/status, sampled every 50 ms)
// and the other tenant's run-create latency during the flood, as Markdown.
//
//	go build -o agentos ./cmd/agentos
//	go run ./bench/streamflood -bin ./agentos -attempts 5000 -addr 127.0.0.1:53081
//
// Refused attempts keep their connections open (idle keep-alive), as a
// careless or hostile client would; accepted streams are held until the
// end.
package main

import (
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
	"sync/atomic"
	"time"
)

type options struct {
	bin, addr, mpAddr string
	attempts          int
	hold              time.Duration
	env               string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "./agentos", "the agentos binary")
	flag.StringVar(&o.addr, "addr", "127.0.0.1:53081", "orchestrator listen address")
	flag.StringVar(&o.mpAddr, "model-policy-addr", "127.0.0.1:53082", "listen address of the stand-in model-policy")
	flag.IntVar(&o.attempts, "attempts", 5000, "concurrent stream attempts of the flooding tenant")
	flag.DurationVar(&o.hold, "hold", 5*time.Second, "how long the streams and refused connections are held after the flood")
	flag.StringVar(&o.env, "env", "", "extra orchestrator environment, comma-separated KEY=VALUE")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "streamflood:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx := context.Background()
	mp, err := net.Listen("tcp", o.mpAddr)
	if err != nil {
		return err
	}
	release := make(chan struct{})
	go func() {
		_ = http.Serve(mp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/health") {
				_, _ = io.WriteString(w, `{"status":"ok"}`)
				return
			}
			select { // hold model calls: runs stay open
			case <-release:
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
	}()
	defer close(release)

	home, err := os.MkdirTemp("", "streamflood-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	cmd := exec.Command(o.bin, "serve", "orchestrator")
	cmd.Dir = home
	cmd.Env = append(os.Environ(), "AGENTOS_HOME="+home, "AGENTOS_MODE=demo", "AGENTOS_ORCHESTRATOR_ADDR="+o.addr,
		"AGENTOS_MODEL_POLICY_URL=http://"+o.mpAddr, "AGENTOS_LOG_LEVEL=warn")
	if o.env != "" {
		cmd.Env = append(cmd.Env, strings.Split(o.env, ",")...)
	}
	logf, err := os.Create(filepath.Join(home, "orchestrator.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	base := "http://" + o.addr
	if err := waitHealthy(base); err != nil {
		return err
	}
	var creds struct {
		PlatformAdmin struct {
			Token string `json:"token"`
		} `json:"platform_admin"`
	}
	b, err := os.ReadFile(filepath.Join(home, "credentials.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		return err
	}
	c := &client{base: base, admin: creds.PlatformAdmin.Token, hc: &http.Client{}}

	// The flooding tenant is tnt_demo (default stream quota); the other
	// tenant may create runs as fast as it likes.
	if code, body, err := c.do(ctx, "POST", "/v1/admin/tenants", "", true, map[string]any{"tenant_id": "tnt_bystander", "name": "bystander",
		"quotas": map[string]any{"runs": map[string]any{"run_create_qps": 100000, "run_create_burst": 100000}}}); err != nil || code != 201 {
		return fmt.Errorf("create tenant: %d %s %v", code, body, err)
	}
	if code, body, err := c.do(ctx, "PUT", "/v1/admin/agents/agt_bystander", "tnt_bystander", true, map[string]any{"agent": map[string]any{
		"name": "bystander", "model_ref": "tier:fast", "instructions": "answer", "tools": []string{}}}); err != nil || code >= 300 {
		return fmt.Errorf("put agent: %d %s %v", code, body, err)
	}
	floodRun, err := c.createRun(ctx, "tnt_demo", "agt_sample_echo_v1")
	if err != nil {
		return err
	}
	pid := cmd.Process.Pid
	rssBefore := rssMB(pid)

	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if v := int64(rssMB(pid) * 1024); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	// The other tenant creates runs, one client after another, from the
	// start of the flood to the end of the hold.
	stopCreates := make(chan struct{})
	var createLat []time.Duration
	createErrs := 0
	var firstCreateErr string
	createsDone := make(chan struct{})
	go func() {
		defer close(createsDone)
		for {
			select {
			case <-stopCreates:
				return
			default:
			}
			t0 := time.Now()
			if _, err := c.createRun(ctx, "tnt_bystander", "agt_bystander"); err != nil {
				createErrs++
				if firstCreateErr == "" {
					firstCreateErr = err.Error()
				}
				continue
			}
			createLat = append(createLat, time.Since(t0))
		}
	}()

	// The flood: every attempt on its own connection, all at once; refused
	// connections stay open (idle) like accepted streams do.
	flood := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.attempts, MaxIdleConns: o.attempts,
		IdleConnTimeout: time.Hour}}
	var mu sync.Mutex
	statuses := map[string]int{}
	var open []io.Closer
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < o.attempts; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/runs/"+floodRun+"/events", nil)
			req.Header.Set("X-Tenant-Id", "tnt_demo")
			resp, err := flood.Do(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				statuses["error: "+shortErr(err)]++
				return
			}
			key := strconv.Itoa(resp.StatusCode)
			if resp.StatusCode == http.StatusOK {
				open = append(open, resp.Body)
			} else {
				var env struct {
					Error struct {
						Code string `json:"code"`
					} `json:"error"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&env)
				resp.Body.Close()
				key += " " + env.Error.Code
				if resp.Header.Get("Retry-After") != "" {
					key += " (Retry-After)"
				}
			}
			statuses[key]++
		}()
	}
	wg.Wait()
	floodSecs := time.Since(start).Seconds()
	time.Sleep(o.hold)
	close(stopCreates)
	<-createsDone
	close(stopSampling)
	<-sampled
	rssHeld := rssMB(pid)
	for _, b := range open {
		b.Close()
	}
	flood.CloseIdleConnections()

	slices.Sort(createLat)
	pct := func(p float64) float64 {
		if len(createLat) == 0 {
			return 0
		}
		return float64(createLat[int(p*float64(len(createLat)-1))].Microseconds()) / 1000
	}
	fmt.Printf("## Stream flood (%s)\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Printf("%d concurrent SSE attempts from tnt_demo on one open run, answered in %.1f s, then held %s:\n\n", o.attempts, floodSecs, o.hold)
	fmt.Println("| answer | attempts |")
	fmt.Println("|---|---|")
	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Printf("| %s | %d |\n", k, statuses[k])
	}
	fmt.Printf("\n| orchestrator RSS | MB |\n|---|---|\n| before | %.0f |\n| peak during flood and hold | %.0f |\n| at the end of the hold | %.0f |\n\n",
		rssBefore, float64(peak.Load())/1024, rssHeld)
	fmt.Printf("Other tenant (tnt_bystander), run create during the flood: %d created, p50 %.1f ms, p99 %.1f ms, %d errors",
		len(createLat), pct(0.5), pct(0.99), createErrs)
	if firstCreateErr != "" {
		fmt.Printf(" (first: %s)", firstCreateErr)
	}
	fmt.Println()
	return nil
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// rssMB reads VmRSS of pid (0 when unreadable).
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

func waitHealthy(base string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("orchestrator not healthy after 60 s")
}

type client struct {
	base, admin string
	hc          *http.Client
}

func (c *client) do(ctx context.Context, method, path, tenant string, asAdmin bool, body any) (int, []byte, error) {
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
	req.Header.Set("Content-Type", "application/json")
	if asAdmin {
		req.Header.Set("Authorization", "Bearer "+c.admin)
	}
	if tenant != "" {
		req.Header.Set("X-Tenant-Id", tenant)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func (c *client) createRun(ctx context.Context, tenant, agent string) (string, error) {
	code, body, err := c.do(ctx, "POST", "/v1/agents/"+agent+"/runs", tenant, false,
		map[string]any{"input": map[string]any{"type": "text", "text": "hello"}})
	if err != nil {
		return "", err
	}
	if code != http.StatusCreated {
		return "", fmt.Errorf("create run: %d %s", code, body)
	}
	var out struct {
		Run struct {
			RunID string `json:"run_id"`
		} `json:"run"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", err
	}
	return out.Run.RunID, nil
}
