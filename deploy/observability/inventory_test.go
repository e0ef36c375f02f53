package observability

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/metrics"
)

// metricInfo is one series name a scrape can return, with its labels.
type metricInfo struct {
	kind   string // counter, gauge, histogram, summary
	labels map[string]bool
}

// inventory maps every series name (histograms also give _bucket, _sum
// and _count) to what it carries.
type inventory map[string]*metricInfo

// family is one metric declared in the Go sources.
type family struct {
	name   string
	kind   string
	labels []string
	pos    string
}

// sourceRoots are the directories (relative to the repository root) whose
// Go code registers the services' metrics.
var sourceRoots = []string{"agentorchestrator", "modelpolicy", "federation", "gateway", "internal"}

var ctorKinds = map[string]string{
	"NewCounter": "counter", "NewCounterVec": "counter", "NewCounterFunc": "counter",
	"NewGauge": "gauge", "NewGaugeVec": "gauge", "NewGaugeFunc": "gauge",
	"NewHistogram": "histogram", "NewHistogramVec": "histogram",
	"NewSummary": "summary", "NewSummaryVec": "summary",
}

// familiesFromSource parses the non-test Go files under roots and returns
// every metric built with a prometheus.NewXxx(Opts{...}, []string{...})
// call. A call whose name or labels are not literals is reported as an
// error: the inventory must never silently miss a metric.
func familiesFromSource(t *testing.T, repo string) []family {
	t.Helper()
	var out []family
	fset := token.NewFileSet()
	for _, root := range sourceRoots {
		err := filepath.WalkDir(filepath.Join(repo, root), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				pkg, ok := sel.X.(*ast.Ident)
				kind, isCtor := ctorKinds[sel.Sel.Name]
				if !ok || pkg.Name != "prometheus" || !isCtor {
					return true
				}
				pos := fset.Position(call.Pos()).String()
				fam, err := familyOf(call, kind)
				if err != nil {
					t.Errorf("%s: %v", pos, err)
					return true
				}
				fam.pos = pos
				out = append(out, fam)
				return true
			})
			return nil
		})
		require.NoError(t, err)
	}
	return out
}

func familyOf(call *ast.CallExpr, kind string) (family, error) {
	fam := family{kind: kind}
	if len(call.Args) == 0 {
		return fam, fmt.Errorf("metric constructor without options")
	}
	opts, ok := call.Args[0].(*ast.CompositeLit)
	if !ok {
		return fam, fmt.Errorf("metric options are not a literal; the observability inventory cannot read them")
	}
	var ns, sub string
	for _, e := range opts.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		key, _ := kv.Key.(*ast.Ident)
		if key == nil {
			continue
		}
		switch key.Name {
		case "Name", "Namespace", "Subsystem":
			s, err := stringLit(kv.Value)
			if err != nil {
				return fam, fmt.Errorf("%s: %v", key.Name, err)
			}
			switch key.Name {
			case "Name":
				fam.name = s
			case "Namespace":
				ns = s
			default:
				sub = s
			}
		case "ConstLabels":
			cl, ok := kv.Value.(*ast.CompositeLit)
			if !ok {
				return fam, fmt.Errorf("ConstLabels is not a literal")
			}
			for _, e := range cl.Elts {
				lkv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					return fam, fmt.Errorf("ConstLabels entry is not key: value")
				}
				s, err := stringLit(lkv.Key)
				if err != nil {
					return fam, fmt.Errorf("ConstLabels key: %v", err)
				}
				fam.labels = append(fam.labels, s)
			}
		}
	}
	parts := []string{}
	for _, p := range []string{ns, sub, fam.name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	fam.name = strings.Join(parts, "_")
	if fam.name == "" {
		return fam, fmt.Errorf("metric without a name")
	}
	if strings.HasSuffix(call.Fun.(*ast.SelectorExpr).Sel.Name, "Vec") {
		if len(call.Args) < 2 {
			return fam, fmt.Errorf("%s: vector without label names", fam.name)
		}
		lit, ok := call.Args[1].(*ast.CompositeLit)
		if !ok {
			return fam, fmt.Errorf("%s: label names are not a []string literal", fam.name)
		}
		for _, e := range lit.Elts {
			s, err := stringLit(e)
			if err != nil {
				return fam, fmt.Errorf("%s: label name: %v", fam.name, err)
			}
			fam.labels = append(fam.labels, s)
		}
	}
	return fam, nil
}

func stringLit(e ast.Expr) (string, error) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", fmt.Errorf("not a string literal")
	}
	return strconv.Unquote(bl.Value)
}

// add records a family's series names.
func (inv inventory) add(name, kind string, labels []string) {
	put := func(n, k string, extra ...string) {
		mi := inv[n]
		if mi == nil {
			mi = &metricInfo{kind: k, labels: map[string]bool{}}
			inv[n] = mi
		}
		for _, l := range append(append([]string{}, labels...), extra...) {
			mi.labels[l] = true
		}
	}
	switch kind {
	case "histogram":
		put(name+"_bucket", "counter", "le")
		put(name+"_sum", "counter")
		put(name+"_count", "counter")
	case "summary":
		put(name, "summary", "quantile")
		put(name+"_sum", "counter")
		put(name+"_count", "counter")
	default:
		put(name, kind)
	}
}

// buildInventory is the set of series the three services can expose: the
// metrics declared in their Go sources, plus the Go and process collectors
// of metrics.NewRegistry (gathered from a real registry), plus Prometheus'
// own `up`.
func buildInventory(t *testing.T, repo string) inventory {
	t.Helper()
	inv := inventory{}
	for _, f := range familiesFromSource(t, repo) {
		inv.add(f.name, f.kind, f.labels)
	}
	reg := metrics.NewRegistry()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		inv.add(mf.GetName(), strings.ToLower(mf.GetType().String()), nil)
	}
	inv.add("up", "gauge", nil)
	return inv
}

// The source inventory must agree with a real registry for the metrics
// internal/metrics exports: this proves the AST reader reads names, const
// labels and variable labels right.
func TestInventoryMatchesRealRegistry(t *testing.T) {
	t.Parallel()
	inv := buildInventory(t, repoRoot)
	reg := metrics.NewRegistry()
	h := metrics.NewHTTP(reg, "test-service")
	h.Observe(httptest.NewRequest("GET", "/v1/health", nil), 200, time.Millisecond)
	metrics.NewAuthFailures(reg, "test-service")("unauthorized")
	mfs, err := reg.Gather()
	require.NoError(t, err)
	seen := 0
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "agentos_") {
			continue
		}
		seen++
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName())
			}
			sort.Strings(labels)
			names := []string{mf.GetName()}
			if mf.GetType().String() == "HISTOGRAM" {
				names = []string{mf.GetName() + "_count", mf.GetName() + "_sum"}
			}
			for _, n := range names {
				mi := inv[n]
				require.NotNil(t, mi, "%s is registered but the source inventory misses it", n)
				require.Equal(t, labels, sortedKeys(mi.labels), "labels of %s", n)
			}
		}
	}
	require.Equal(t, 3, seen, "internal/metrics registers http requests, http duration and auth failures")
	require.Contains(t, inv, "go_goroutines")
	require.Contains(t, inv["agentos_http_request_duration_seconds_bucket"].labels, "le")
}

// Every service's metrics are found (a sample of each, by service).
func TestInventoryCoversServices(t *testing.T) {
	t.Parallel()
	inv := buildInventory(t, repoRoot)
	for _, name := range []string{
		"agentos_runs_total", "agentos_run_duration_seconds_bucket", "agentos_queue_depth", "agentos_active_runs", // orchestrator
		"agentos_model_requests_total", "agentos_model_backend_up", "agentos_policy_blocks_total", // model-policy
		"agentos_federation_forwards_total", "agentos_federation_peer_rejections_total", // federation
		"agentos_gateway_requests_total", "agentos_gateway_upstream_healthy", // gateway
		"agentos_http_requests_total", "agentos_auth_failures_total", // shared
	} {
		require.Contains(t, inv, name)
	}
	require.True(t, inv["agentos_runs_total"].labels["outcome"])
	require.True(t, inv["agentos_http_requests_total"].labels["service"])
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
