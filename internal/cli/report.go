package cli

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/supervisor"
	"github.com/nexixai/agentos/internal/version"
)

// ReportSchemaVersion is the version of the report JSON shape documented in
// docs/operations.md. Fields are only ever added within a version.
const ReportSchemaVersion = 1

// Report is what up/redeploy/validate/nuke write to
// $AGENTOS_HOME/reports/<action>-YYYYMMDD-HHMMSS.{md,json}.
type Report struct {
	SchemaVersion int               `json:"schema_version"`
	Action        string            `json:"action"`
	OK            bool              `json:"ok"`
	StartedAt     time.Time         `json:"started_at"`
	FinishedAt    time.Time         `json:"finished_at"`
	DurationMs    int64             `json:"duration_ms"`
	Mode          string            `json:"mode"`
	Profile       string            `json:"profile"`
	Home          string            `json:"home"`
	Host          HostInfo          `json:"host"`
	Versions      Versions          `json:"versions"`
	Ports         map[string]string `json:"ports"`
	Endpoints     map[string]string `json:"endpoints"`
	Seeded        Seeded            `json:"seeded"`
	Credentials   CredentialsInfo   `json:"credentials"`
	Quotas        map[string]any    `json:"default_quotas"`
	Phases        []PhaseResult     `json:"phases"`
	Services      []ServiceReport   `json:"services"`
	Health        []CheckResult     `json:"health"`
	Smoke         []CheckResult     `json:"smoke"`
	Federation    *FederationReport `json:"federation,omitempty"`
	Alerts        AlertStatus       `json:"alerts"`
	Failure       *Failure          `json:"failure"`
	Remediation   []string          `json:"remediation"`
	Reports       ReportPaths       `json:"reports"`
}

// HostInfo describes the machine.
type HostInfo struct {
	Hostname  string `json:"hostname"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	User      string `json:"user"`
}

// Versions of the CLI and each running service.
type Versions struct {
	AgentOS  string            `json:"agentos"`
	GitSHA   string            `json:"git_sha"`
	Services map[string]string `json:"services"`
}

// Seeded lists the ids seeded in demo/dev (empty in prod).
type Seeded struct {
	Tenants    []string `json:"tenants"`
	Principals []string `json:"principals"`
	Agents     []string `json:"agents"`
	Tools      []string `json:"tools"`
}

// CredentialsInfo says where credentials are, never the secrets.
type CredentialsInfo struct {
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	Rotate string `json:"rotate"`
}

// ServiceReport is one service's process state.
type ServiceReport struct {
	Name    string `json:"name"`
	Node    string `json:"node,omitempty"` // "a" or "b" in the federated profile
	PID     int    `json:"pid"`
	Address string `json:"address"`
	URL     string `json:"url"`
	Healthy bool   `json:"healthy"`
	Version string `json:"version"`
	Action  string `json:"action"` // started, restarted, left running, stopped, none
	LogFile string `json:"log_file"`
}

// CheckResult is one health or smoke check.
type CheckResult struct {
	Name       string `json:"name"`
	OK         bool   `json:"ok"`
	DurationMs int64  `json:"duration_ms"`
	Detail     string `json:"detail,omitempty"`
	Error      string `json:"error,omitempty"`
}

// AlertStatus says whether alerting is configured for this node.
type AlertStatus struct {
	Status string `json:"status"` // not_configured, configured, sent, "failed: <reason>"
	Detail string `json:"detail"`
}

// Failure names what failed, its last log lines and what to do next.
type Failure struct {
	Check       string   `json:"check"`
	Message     string   `json:"message"`
	Service     string   `json:"service,omitempty"`
	Node        string   `json:"node,omitempty"`     // "a" or "b" in the federated profile
	StackID     string   `json:"stack_id,omitempty"` // that node's stack_id
	LogFile     string   `json:"log_file,omitempty"`
	LogLines    []string `json:"log_lines,omitempty"`
	NextCommand string   `json:"next_command"`
}

// FederationReport is the federated profile's part of a report: both
// nodes, the shared CA, the peer URLs and the federation smoke tests.
type FederationReport struct {
	Nodes  []NodeReport      `json:"nodes"`
	CADir  string            `json:"ca_dir,omitempty"`
	Peers  map[string]string `json:"peers"` // stack_id -> its peer API URL
	Checks []CheckResult     `json:"checks"`
}

// NodeReport describes one node of the federated profile.
type NodeReport struct {
	Node      string            `json:"node"` // a or b
	StackID   string            `json:"stack_id"`
	Region    string            `json:"region"`
	Home      string            `json:"home"`
	PeerURL   string            `json:"peer_url"`
	Endpoints map[string]string `json:"endpoints"`
}

// ReportPaths are where the report was written.
type ReportPaths struct {
	Markdown string `json:"markdown"`
	JSON     string `json:"json"`
}

// newReport starts a report for action.
func newReport(action string, n *supervisor.Node, profile string) *Report {
	host, _ := os.Hostname()
	r := &Report{
		SchemaVersion: ReportSchemaVersion,
		Action:        action,
		StartedAt:     time.Now().UTC(),
		Profile:       profile,
		Host: HostInfo{Hostname: host, OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
			GoVersion: runtime.Version(), User: os.Getenv("USER")},
		Versions:    Versions{AgentOS: version.Version, GitSHA: version.SHA(), Services: map[string]string{}},
		Ports:       map[string]string{},
		Endpoints:   map[string]string{},
		Quotas:      map[string]any{},
		Seeded:      Seeded{Tenants: []string{}, Principals: []string{}, Agents: []string{}, Tools: []string{}},
		Phases:      []PhaseResult{},
		Services:    []ServiceReport{},
		Health:      []CheckResult{},
		Smoke:       []CheckResult{},
		Remediation: []string{},
		Alerts:      nodeAlertStatus(n),
	}
	if n != nil {
		c := n.Cfg
		r.Mode, r.Home = c.Mode, c.Home
		for _, s := range n.Services {
			r.Endpoints[s.Name] = s.DisplayURL()
			if s.HealthPath == "" {
				continue // PostgreSQL: no HTTP endpoints
			}
			r.Ports[s.Name] = s.Addr
			r.Endpoints[s.Name+"_health"] = s.URL + s.HealthPath
			r.Endpoints[s.Name+"_metrics"] = s.URL + "/metrics"
		}
		if _, ok := n.Service("federation"); ok {
			r.Ports["federation_peer"] = c.FederationPeerAddr
		}
		if b := n.B; b != nil {
			r.Federation = &FederationReport{Peers: map[string]string{}, Checks: []CheckResult{}}
			for _, x := range n.All() {
				nr := NodeReport{Node: x.Name, StackID: x.Cfg.StackID, Region: x.Cfg.Region, Home: x.Cfg.Home,
					PeerURL: peerURL(x.Cfg), Endpoints: map[string]string{}}
				for _, s := range x.Services {
					nr.Endpoints[s.Name] = s.URL
				}
				r.Federation.Nodes = append(r.Federation.Nodes, nr)
			}
			for _, s := range b.Services {
				r.Ports["node_b_"+s.Name] = s.Addr
				r.Endpoints["node_b_"+s.Name] = s.URL
				r.Endpoints["node_b_"+s.Name+"_health"] = s.URL + s.HealthPath
			}
			r.Ports["node_b_federation_peer"] = b.Cfg.FederationPeerAddr
		}
		r.Endpoints["admin_api"] = c.OrchestratorURL + "/v1/admin/tenants"
		r.Credentials = CredentialsInfo{Path: c.CredentialsFile(), Exists: fileExists(c.CredentialsFile()),
			Rotate: "agentos tokens issue --tenant <tenant> --principal <principal>, then agentos tokens revoke --tenant <tenant> <old token_id>"}
		r.Quotas = map[string]any{
			"run_create_qps":      c.QuotaRunCreateQPS,
			"max_concurrent_runs": c.QuotaConcurrentRuns,
			"invoke_qps":          c.QuotaInvokeQPS,
			"override":            "per tenant: agentos tenants update <tenant> --max-concurrent-runs N --run-create-qps N; node defaults: AGENTOS_QUOTA_* in .agentos.env",
		}
	}
	return r
}

// finish stamps the end time and outcome.
func (r *Report) finish(ok bool, phases []PhaseResult) {
	r.OK = ok
	r.FinishedAt = time.Now().UTC()
	r.DurationMs = r.FinishedAt.Sub(r.StartedAt).Milliseconds()
	if phases != nil {
		r.Phases = phases
	}
}

// write saves the report as Markdown and JSON under dir and returns the paths.
// Two reports of the same action in the same second get a -2, -3... suffix.
func (r *Report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := fmt.Sprintf("%s-%s", r.Action, r.StartedAt.Local().Format("20060102-150405"))
	name := base
	for i := 2; fileExists(filepath.Join(dir, name+".json")) || fileExists(filepath.Join(dir, name+".md")); i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	r.Reports = ReportPaths{Markdown: filepath.Join(dir, name+".md"), JSON: filepath.Join(dir, name+".json")}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(r.Reports.JSON, append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(r.Reports.Markdown, []byte(r.Markdown()), 0o644)
}

// Markdown renders the report for people: a header, then one section per
// part of the report that has something to say.
func (r *Report) Markdown() string {
	var b strings.Builder
	r.mdHeader(&b)
	r.mdFailure(&b)
	r.mdTables(&b)
	mdChecks(&b, "Health", r.Health)
	mdChecks(&b, "Smoke tests", r.Smoke)
	r.mdFederation(&b)
	r.mdSetup(&b)
	return b.String()
}

func (r *Report) mdHeader(b *strings.Builder) {
	status := "OK"
	if !r.OK {
		status = "FAILED"
	}
	fmt.Fprintf(b, "# agentos %s: %s\n\n", r.Action, status)
	fmt.Fprintf(b, "- started: %s, took %s\n", r.StartedAt.Format(time.RFC3339), fmtDuration(time.Duration(r.DurationMs)*time.Millisecond))
	fmt.Fprintf(b, "- mode: %s, profile: %s, home: `%s`\n", r.Mode, r.Profile, r.Home)
	fmt.Fprintf(b, "- host: %s (%s/%s, %d CPUs, %s)\n", r.Host.Hostname, r.Host.OS, r.Host.Arch, r.Host.CPUs, r.Host.GoVersion)
	fmt.Fprintf(b, "- agentos %s (%s)\n\n", r.Versions.AgentOS, r.Versions.GitSHA)
}

func (r *Report) mdFailure(b *strings.Builder) {
	f := r.Failure
	if f == nil {
		return
	}
	fmt.Fprintf(b, "## Failure\n\n- check: **%s**\n- %s\n", f.Check, f.Message)
	if f.Service != "" {
		fmt.Fprintf(b, "- service: %s\n", f.Service)
	}
	if f.Node != "" {
		fmt.Fprintf(b, "- node: %s (%s)\n", f.Node, f.StackID)
	}
	if f.LogFile != "" {
		fmt.Fprintf(b, "- log: `%s`\n", f.LogFile)
	}
	if len(f.LogLines) > 0 {
		fmt.Fprintf(b, "\n```\n%s\n```\n", strings.Join(f.LogLines, "\n"))
	}
	fmt.Fprintf(b, "\nNext: `%s`\n\n", f.NextCommand)
}

// mdTables writes the phases, services and endpoints.
func (r *Report) mdTables(b *strings.Builder) {
	if len(r.Phases) > 0 {
		b.WriteString("## Phases\n\n| phase | status | time | detail |\n|---|---|---|---|\n")
		for _, p := range r.Phases {
			fmt.Fprintf(b, "| %s | %s | %dms | %s |\n", mdCell(p.Name), p.Status, p.DurationMs, mdCell(p.Detail))
		}
		b.WriteString("\n")
	}
	if len(r.Services) > 0 {
		b.WriteString("## Services\n\n| service | pid | address | healthy | version | action | log |\n|---|---|---|---|---|---|---|\n")
		for _, s := range r.Services {
			name := s.Name
			if s.Node != "" {
				name = s.Node + "/" + s.Name
			}
			fmt.Fprintf(b, "| %s | %d | %s | %v | %s | %s | `%s` |\n", name, s.PID, s.Address, s.Healthy, s.Version, s.Action, s.LogFile)
		}
		b.WriteString("\n")
	}
	if len(r.Endpoints) > 0 {
		b.WriteString("## Endpoints\n\n")
		for _, k := range slices.Sorted(maps.Keys(r.Endpoints)) {
			fmt.Fprintf(b, "- %s: %s\n", k, r.Endpoints[k])
		}
		b.WriteString("\n")
	}
}

// mdChecks writes a table of checks under title (nothing when none ran).
func mdChecks(b *strings.Builder, title string, cs []CheckResult) {
	if len(cs) == 0 {
		return
	}
	fmt.Fprintf(b, "## %s\n\n| check | result | time | detail |\n|---|---|---|---|\n", title)
	for _, c := range cs {
		res, detail := "pass", c.Detail
		if !c.OK {
			res, detail = "FAIL", c.Error
		}
		fmt.Fprintf(b, "| %s | %s | %dms | %s |\n", mdCell(c.Name), res, c.DurationMs, mdCell(detail))
	}
	b.WriteString("\n")
}

func (r *Report) mdFederation(b *strings.Builder) {
	f := r.Federation
	if f == nil {
		return
	}
	b.WriteString("## Federation\n\n")
	for _, nd := range f.Nodes {
		fmt.Fprintf(b, "- node %s: %s (region %s), home `%s`, peer API %s\n", nd.Node, nd.StackID, nd.Region, nd.Home, nd.PeerURL)
	}
	if f.CADir != "" {
		fmt.Fprintf(b, "- CA: `%s`\n", f.CADir)
	}
	b.WriteString("\n")
	mdChecks(b, "Federation checks", f.Checks)
}

// mdSetup writes what the node was set up with and what to do next:
// seeded objects, credentials, default quotas, alerts, remediation.
func (r *Report) mdSetup(b *strings.Builder) {
	if len(r.Seeded.Tenants)+len(r.Seeded.Agents) > 0 {
		fmt.Fprintf(b, "## Seeded\n\n- tenants: %s\n- principals: %s\n- agents: %s\n- tools: %s\n\n",
			strings.Join(r.Seeded.Tenants, ", "), strings.Join(r.Seeded.Principals, ", "),
			strings.Join(r.Seeded.Agents, ", "), strings.Join(r.Seeded.Tools, ", "))
	}
	if r.Credentials.Path != "" {
		fmt.Fprintf(b, "## Credentials\n\n- file: `%s` (exists: %v, mode 0600)\n- rotate: `%s`\n\n", r.Credentials.Path, r.Credentials.Exists, r.Credentials.Rotate)
	}
	if len(r.Quotas) > 0 {
		fmt.Fprintf(b, "## Default quotas\n\n- run create QPS: %v\n- max concurrent runs: %v\n- model invoke QPS: %v\n- override: %v\n\n",
			r.Quotas["run_create_qps"], r.Quotas["max_concurrent_runs"], r.Quotas["invoke_qps"], r.Quotas["override"])
	}
	fmt.Fprintf(b, "## Alerts\n\n- %s: %s\n\n", r.Alerts.Status, r.Alerts.Detail)
	if len(r.Remediation) > 0 {
		b.WriteString("## Remediation\n\n")
		for _, t := range r.Remediation {
			fmt.Fprintf(b, "- %s\n", t)
		}
		b.WriteString("\n")
	}
}

func mdCell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
