package observability

import (
	"encoding/json"
	"fmt"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"text/template"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/nexixai/agentos/internal/config"
)

// repoRoot is the repository root, relative to this package.
const repoRoot = "../.."

func readYAML(t *testing.T, name string, dst any) {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(dst), name)
}

// promConfig is the part of prometheus.yml the test reads.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles []string `yaml:"rule_files"`
	Alerting  struct {
		Alertmanagers []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"alertmanagers"`
	} `yaml:"alerting"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var rePromDuration = regexp.MustCompile(`^(?:\d+(?:ms|s|m|h|d|w|y))+$`)

// newChecker builds the PromQL checker from the real metric inventory and
// the target labels prometheus.yml adds.
func newChecker(t *testing.T) (*checker, promConfig) {
	t.Helper()
	var pc promConfig
	readYAML(t, "prometheus.yml", &pc)
	target := map[string]bool{"job": true, "instance": true}
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for k := range st.Labels {
				target[k] = true
			}
		}
	}
	return &checker{inv: buildInventory(t, repoRoot), targetLabels: target}, pc
}

func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	_, pc := newChecker(t)
	require.True(t, rePromDuration.MatchString(pc.Global.ScrapeInterval))
	require.True(t, rePromDuration.MatchString(pc.Global.EvaluationInterval))
	require.NotEmpty(t, pc.RuleFiles)
	for _, f := range pc.RuleFiles {
		_, err := os.Stat(f)
		require.NoError(t, err, "rule file %s", f)
	}
	require.NotEmpty(t, pc.Alerting.Alertmanagers)

	// The scrape targets are the services' default listen addresses.
	def, err := config.Load(func(string) (string, bool) { return "", false }, filepath.Join(t.TempDir(), "none.env"))
	require.NoError(t, err)
	want := map[string]string{
		"agentos-orchestrator": def.OrchestratorAddr,
		"agentos-model-policy": def.ModelPolicyAddr,
		"agentos-federation":   def.FederationAddr,
	}
	got := map[string]string{}
	for _, sc := range pc.ScrapeConfigs {
		if !strings.HasPrefix(sc.JobName, "agentos-") {
			continue
		}
		require.Equal(t, "/metrics", sc.MetricsPath, sc.JobName)
		require.Len(t, sc.StaticConfigs, 1, sc.JobName)
		st := sc.StaticConfigs[0]
		require.Len(t, st.Targets, 1, sc.JobName)
		got[sc.JobName] = st.Targets[0]
		require.Equal(t, def.StackID, st.Labels["stack_id"], sc.JobName)
		require.Equal(t, def.Region, st.Labels["region"], sc.JobName)
	}
	require.Equal(t, want, got)
}

// promTemplate parses an annotation the way Prometheus does (with $labels,
// $value and $externalLabels defined) and returns the $labels it uses.
var reLabelRef = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

func promTemplate(text string) ([]string, error) {
	funcs := template.FuncMap{}
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage",
		"humanizeTimestamp", "title", "toUpper", "toLower", "first", "label", "value", "query", "args",
		"reReplaceAll", "match", "safeHtml", "stripPort", "graphLink", "tableLink", "externalURL", "pathPrefix"} {
		funcs[f] = func(...any) any { return nil }
	}
	pre := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	if _, err := template.New("a").Funcs(funcs).Parse(pre + text); err != nil {
		return nil, err
	}
	var out []string
	for _, m := range reLabelRef.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out, nil
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t)
	var rf ruleFile
	readYAML(t, "alerts.yml", &rf)
	require.NotEmpty(t, rf.Groups)
	names := map[string]bool{}
	metrics := map[string]bool{}
	for _, g := range rf.Groups {
		require.NotEmpty(t, g.Name)
		require.NotEmpty(t, g.Rules, g.Name)
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "group %s: a rule without alert name", g.Name)
			require.False(t, names[r.Alert], "duplicate alert %s", r.Alert)
			names[r.Alert] = true
			require.NotEmpty(t, r.Expr, r.Alert)
			require.True(t, rePromDuration.MatchString(r.For), "%s: for %q", r.Alert, r.For)
			require.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], "%s: severity", r.Alert)
			require.NotEmpty(t, strings.TrimSpace(r.Annotations["summary"]), "%s: summary", r.Alert)
			require.NotEmpty(t, strings.TrimSpace(r.Annotations["description"]), "%s: description", r.Alert)

			info, err := c.check(r.Expr)
			require.NoError(t, err, "%s: %s", r.Alert, r.Expr)
			for _, m := range info.metrics {
				metrics[m] = true
			}
			// Labels an annotation prints must survive the expression.
			allowed := info.byLabels
			if !info.hasBy {
				allowed = map[string]bool{}
				for l := range c.targetLabels {
					allowed[l] = true
				}
				for _, m := range info.metrics {
					for l := range c.inv[m].labels {
						allowed[l] = true
					}
				}
			}
			for k, text := range r.Annotations {
				used, err := promTemplate(text)
				require.NoError(t, err, "%s: annotation %s", r.Alert, k)
				for _, l := range used {
					require.True(t, allowed[l], "%s: annotation %s prints $labels.%s, which %q does not keep", r.Alert, k, l, r.Expr)
				}
			}
		}
	}
	// The alerts the operators asked for exist.
	for _, want := range []string{"up", "agentos_http_requests_total", "agentos_federation_http_requests_total",
		"agentos_runs_total", "agentos_queue_depth", "agentos_auth_failures_total", "agentos_model_backend_up",
		"agentos_policy_blocks_total", "agentos_model_requests_total"} {
		require.True(t, metrics[want], "no alert watches %s", want)
	}
}

type amConfig struct {
	Global struct {
		SMTPSmarthost        string `yaml:"smtp_smarthost"`
		SMTPFrom             string `yaml:"smtp_from"`
		SMTPAuthUsername     string `yaml:"smtp_auth_username"`
		SMTPAuthPasswordFile string `yaml:"smtp_auth_password_file"`
		SMTPRequireTLS       bool   `yaml:"smtp_require_tls"`
		ResolveTimeout       string `yaml:"resolve_timeout"`
	} `yaml:"global"`
	Route     amRoute `yaml:"route"`
	Receivers []struct {
		Name         string `yaml:"name"`
		EmailConfigs []struct {
			To           string            `yaml:"to"`
			SendResolved bool              `yaml:"send_resolved"`
			Headers      map[string]string `yaml:"headers"`
		} `yaml:"email_configs"`
	} `yaml:"receivers"`
	InhibitRules []struct {
		SourceMatchers []string `yaml:"source_matchers"`
		TargetMatchers []string `yaml:"target_matchers"`
		Equal          []string `yaml:"equal"`
	} `yaml:"inhibit_rules"`
}

type amRoute struct {
	Receiver       string    `yaml:"receiver"`
	GroupBy        []string  `yaml:"group_by"`
	GroupWait      string    `yaml:"group_wait"`
	GroupInterval  string    `yaml:"group_interval"`
	RepeatInterval string    `yaml:"repeat_interval"`
	Matchers       []string  `yaml:"matchers"`
	Routes         []amRoute `yaml:"routes"`
}

var reAMMatcher = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)"([^"]*)"$`)

func TestAlertmanagerConfig(t *testing.T) {
	t.Parallel()
	var am amConfig
	readYAML(t, "alertmanager.yml", &am)
	host, port, err := net.SplitHostPort(am.Global.SMTPSmarthost)
	require.NoError(t, err, "smtp_smarthost must be host:port")
	require.NotEmpty(t, host)
	require.NotEmpty(t, port)
	_, err = mail.ParseAddress(am.Global.SMTPFrom)
	require.NoError(t, err)
	require.True(t, am.Global.SMTPRequireTLS)

	var rf ruleFile
	readYAML(t, "alerts.yml", &rf)
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
		}
	}

	receivers := map[string]bool{}
	for _, r := range am.Receivers {
		receivers[r.Name] = true
		require.NotEmpty(t, r.EmailConfigs, "receiver %s mails no one", r.Name)
		for _, ec := range r.EmailConfigs {
			_, err := mail.ParseAddress(ec.To)
			require.NoError(t, err, "receiver %s", r.Name)
			for k, v := range ec.Headers {
				_, err := template.New(k).Parse(v)
				require.NoError(t, err, "receiver %s header %s", r.Name, k)
			}
		}
	}
	var walk func(r amRoute, top bool)
	walk = func(r amRoute, top bool) {
		if top || r.Receiver != "" {
			require.True(t, receivers[r.Receiver], "route to unknown receiver %q", r.Receiver)
		}
		for _, d := range []string{r.GroupWait, r.GroupInterval, r.RepeatInterval} {
			require.True(t, d == "" || rePromDuration.MatchString(d), "duration %q", d)
		}
		for _, m := range r.Matchers {
			require.Regexp(t, reAMMatcher, m)
		}
		for _, sub := range r.Routes {
			walk(sub, false)
		}
	}
	walk(am.Route, true)
	for _, ir := range am.InhibitRules {
		for _, m := range append(append([]string{}, ir.SourceMatchers...), ir.TargetMatchers...) {
			sm := reAMMatcher.FindStringSubmatch(m)
			require.NotNil(t, sm, "inhibit matcher %q", m)
			if sm[1] == "alertname" && sm[2] == "=" {
				require.True(t, alerts[sm[3]], "inhibit rule names unknown alert %s", sm[3])
			}
			if sm[1] == "alertname" && sm[2] == "=~" {
				for _, a := range strings.Split(sm[3], "|") {
					require.True(t, alerts[a], "inhibit rule names unknown alert %s", a)
				}
			}
		}
	}
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob("grafana/dashboards/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := map[string]dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var d dashboard
		require.NoError(t, json.Unmarshal(b, &d), f)
		out[d.Title] = d
	}
	return out
}

func TestDashboards(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t)
	dashboards := loadDashboards(t)
	require.Contains(t, dashboards, "AgentOS overview")
	require.Contains(t, dashboards, "AgentOS tenant health")
	uids := map[string]bool{}
	for title, d := range dashboards {
		require.NotEmpty(t, d.UID, title)
		require.False(t, uids[d.UID], "duplicate uid %s", d.UID)
		uids[d.UID] = true
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
			if v.Type != "query" {
				continue
			}
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				require.NoError(t, json.Unmarshal(v.Query, &q.Query), "%s: variable %s", title, v.Name)
			}
			require.NoError(t, c.checkLabelValues(q.Query), "%s: variable %s", title, v.Name)
		}
		require.True(t, vars["datasource"], "%s: no datasource variable", title)
		ids := map[int]bool{}
		for _, p := range d.Panels {
			require.False(t, ids[p.ID], "%s: duplicate panel id %d", title, p.ID)
			ids[p.ID] = true
			require.NotNil(t, p.GridPos, "%s: panel %q has no gridPos", title, p.Title)
			require.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "%s: panel %q too wide", title, p.Title)
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			require.NotEmpty(t, p.Targets, "%s: panel %q has no query", title, p.Title)
			require.NotNil(t, p.Datasource, "%s: panel %q has no datasource", title, p.Title)
			require.Equal(t, "${datasource}", p.Datasource.UID, "%s: panel %q", title, p.Title)
			for _, tg := range p.Targets {
				_, err := c.check(tg.Expr)
				require.NoError(t, err, "%s: panel %q: %s", title, p.Title, tg.Expr)
				for _, v := range regexp.MustCompile(`\$([a-z_]+)`).FindAllStringSubmatch(tg.Expr, -1) {
					require.True(t, vars[v[1]] || strings.HasPrefix(v[1], "__"), "%s: panel %q uses undefined $%s", title, p.Title, v[1])
				}
			}
		}
	}
	overview := metricsOf(t, c, dashboards["AgentOS overview"])
	for _, want := range []string{"agentos_runs_total", "agentos_run_duration_seconds_bucket", "agentos_queue_depth",
		"agentos_active_runs", "agentos_http_requests_total", "agentos_model_calls_total", "agentos_tool_calls_total"} {
		require.True(t, overview[want], "AgentOS overview does not show %s", want)
	}
}

func metricsOf(t *testing.T, c *checker, d dashboard) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				continue
			}
			info, err := c.check(tg.Expr)
			require.NoError(t, err)
			for _, m := range info.metrics {
				out[m] = true
			}
		}
	}
	return out
}

// Every AgentOS metric a service registers is on a dashboard or watched by
// an alert: a new metric needs a panel (or an alert) here.
func TestEveryMetricIsUsed(t *testing.T) {
	t.Parallel()
	c, _ := newChecker(t)
	used := map[string]bool{}
	for _, d := range loadDashboards(t) {
		for m := range metricsOf(t, c, d) {
			used[m] = true
		}
	}
	var rf ruleFile
	readYAML(t, "alerts.yml", &rf)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			info, err := c.check(r.Expr)
			require.NoError(t, err)
			for _, m := range info.metrics {
				used[m] = true
			}
		}
	}
	var unused []string
	for _, f := range familiesFromSource(t, repoRoot) {
		names := []string{f.name}
		if f.kind == "histogram" {
			names = []string{f.name + "_bucket", f.name + "_sum", f.name + "_count"}
		}
		ok := false
		for _, n := range names {
			ok = ok || used[n]
		}
		if !ok && strings.HasPrefix(f.name, "agentos_") {
			unused = append(unused, fmt.Sprintf("%s (%s)", f.name, f.pos))
		}
	}
	sort.Strings(unused)
	require.Empty(t, unused, "metrics on no dashboard and in no alert")
}

// compose.yaml mounts files that exist.
func TestComposeMounts(t *testing.T) {
	t.Parallel()
	var cf struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile("compose.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &cf))
	require.Len(t, cf.Services, 3)
	for name, s := range cf.Services {
		require.NotEmpty(t, s.Image, name)
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, "./") || src == "./smtp_password" {
				continue // named volume, or the secret the operator creates
			}
			_, err := os.Stat(src)
			require.NoError(t, err, "%s mounts %s", name, src)
		}
	}
	var ds struct {
		Datasources []struct {
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAMLLoose(t, "grafana/provisioning/datasources/prometheus.yml", &ds)
	require.Len(t, ds.Datasources, 1)
	require.Equal(t, "prometheus", ds.Datasources[0].Type)
}

func readYAMLLoose(t *testing.T, name string, dst any) {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, dst), name)
}
