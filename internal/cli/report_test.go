package cli

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestReportWriteJSONAndMarkdown(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	r := newReport("validate", n, "local")
	r.Health = append(r.Health, CheckResult{Name: "orchestrator /v1/health", OK: true, DurationMs: 3, Detail: "version 1"})
	r.Smoke = append(r.Smoke, CheckResult{Name: "sample run | SSE", OK: false, Error: "boom"})
	r.Failure = &Failure{Check: "sample run", Message: "boom", Service: "orchestrator", LogLines: []string{"l1"}, NextCommand: "agentos logs orchestrator"}
	r.finish(false, []PhaseResult{{Name: "validate", Status: "failed", DurationMs: 4}})
	dir := filepath.Join(t.TempDir(), "reports")
	require.NoError(t, r.write(dir))
	require.True(t, strings.HasPrefix(filepath.Base(r.Reports.JSON), "validate-"))
	b, err := os.ReadFile(r.Reports.JSON)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(b, &back))
	for _, k := range []string{"schema_version", "action", "ok", "host", "versions", "ports", "endpoints", "seeded", "credentials",
		"default_quotas", "phases", "services", "health", "smoke", "alerts", "failure", "remediation", "reports"} {
		require.Contains(t, back, k)
	}
	require.Equal(t, float64(ReportSchemaVersion), back["schema_version"])
	md, err := os.ReadFile(r.Reports.Markdown)
	require.NoError(t, err)
	require.Contains(t, string(md), "# agentos validate: FAILED")
	require.Contains(t, string(md), `sample run \| SSE`)
	require.Contains(t, string(md), "Next: `agentos logs orchestrator`")
	require.NotContains(t, string(b), "token\":", "reports never contain secrets")

	// Same action in the same second: a new file, not an overwrite.
	first := r.Reports.JSON
	require.NoError(t, r.write(dir))
	require.NotEqual(t, first, r.Reports.JSON)
	require.FileExists(t, first)
}

// fullReport fills every section the Markdown report renders.
func fullReport() *Report {
	return &Report{
		Action: "validate", OK: false, StartedAt: time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC), DurationMs: 61_500,
		Mode: "demo", Profile: "federated", Home: "/h/.agentos",
		Host:     HostInfo{Hostname: "box", OS: "linux", Arch: "amd64", CPUs: 2, GoVersion: "go1.27.3"},
		Versions: Versions{AgentOS: "1.2.3", GitSHA: "abc123"},
		Failure: &Failure{Check: "sample run over SSE", Message: "run ended with agentos.run.failed", Service: "orchestrator",
			Node: "b", StackID: "stk_b", LogFile: "/h/logs/orchestrator.log", LogLines: []string{"l1", "l2"}, NextCommand: "agentos logs orchestrator --node b"},
		Phases: []PhaseResult{{Name: "boot", Status: "ok", DurationMs: 900, Detail: "2 | 2 up"}, {Name: "validate", Status: "failed", DurationMs: 12}},
		Services: []ServiceReport{{Name: "orchestrator", PID: 41, Address: "127.0.0.1:1", Healthy: true, Version: "1.2.3", Action: "started", LogFile: "/h/logs/o.log"},
			{Name: "federation", Node: "b", PID: 42, Address: "127.0.0.1:2", Action: "left running", LogFile: "/h/b/logs/f.log"}},
		Endpoints: map[string]string{"orchestrator": "http://127.0.0.1:1", "model-policy": "http://127.0.0.1:3"},
		Health:    []CheckResult{{Name: "orchestrator /v1/health", OK: true, DurationMs: 3, Detail: "version 1.2.3"}},
		Smoke:     []CheckResult{{Name: "sample run over SSE", DurationMs: 40, Error: "boom\nsecond line"}},
		Federation: &FederationReport{CADir: "/h/federation/ca",
			Nodes:  []NodeReport{{Node: "a", StackID: "stk_a", Region: "local", Home: "/h/.agentos", PeerURL: "https://127.0.0.1:4"}},
			Checks: []CheckResult{{Name: "a→b peer info over mTLS", OK: true, DurationMs: 7, Detail: "stk_b offers runs.forward"}}},
		Seeded:      Seeded{Tenants: []string{"tnt_demo"}, Principals: []string{"usr_admin"}, Agents: []string{"agt_sample_echo_v1"}, Tools: []string{"tool.echo"}},
		Credentials: CredentialsInfo{Path: "/h/.agentos/credentials.json", Exists: true, Rotate: "agentos nuke --hard && agentos up"},
		Quotas:      map[string]any{"run_create_qps": 5, "max_concurrent_runs": 10, "invoke_qps": 20, "override": "agentos tenants update"},
		Alerts:      AlertStatus{Status: "not_configured", Detail: "set AGENTOS_ALERT_SMTP_ADDR"},
		Remediation: []string{"agentos logs orchestrator --tail 100", "agentos redeploy"},
	}
}

// The Markdown report, every section filled, is the golden file
// testdata/report.golden.md (go test -run TestReportMarkdownGolden -update
// rewrites it).
func TestReportMarkdownGolden(t *testing.T) {
	t.Parallel()
	got := fullReport().Markdown()
	golden := filepath.Join("testdata", "report.golden.md")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), got)
}
