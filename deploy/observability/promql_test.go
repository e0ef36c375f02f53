package observability

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// This is a light PromQL checker (promtool is not available and the
// prometheus/prometheus module is too heavy to import): it lexes an
// expression, checks brackets balance, that every function is a PromQL
// function, that every metric and every label in a matcher or a
// by/without/on/ignoring clause exists in the inventory, that range
// functions get a range, and that rate/increase only see counters.

type tokKind byte

const (
	tIdent  tokKind = 'i'
	tNumber tokKind = 'n'
	tDur    tokKind = 'd'
	tString tokKind = 's'
	tRange  tokKind = 'r' // [5m], [$__rate_interval], [5m:1m]
	tOp     tokKind = 'o'
	tLParen tokKind = '('
	tRParen tokKind = ')'
	tLBrace tokKind = '{'
	tRBrace tokKind = '}'
	tComma  tokKind = ','
)

type tok struct {
	kind tokKind
	text string
	pos  int
}

const durUnit = `(?:ms|s|m|h|d|w|y)`

var (
	reNumber   = regexp.MustCompile(`^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?`)
	reDuration = regexp.MustCompile(`^(?:\d+` + durUnit + `)+`)
	reRange    = regexp.MustCompile(`^(?:(?:\d+` + durUnit + `)+|\$__rate_interval|\$__interval|\$__range)(?::(?:\d+` + durUnit + `)*)?$`)
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func lex(s string) ([]tok, error) {
	var out []tok
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			out = append(out, tok{tIdent, s[i:j], i})
			i = j
		case c >= '0' && c <= '9' || c == '.':
			if d := reDuration.FindString(s[i:]); d != "" && (i+len(d) == len(s) || !isIdentChar(s[i+len(d)])) {
				out = append(out, tok{tDur, d, i})
				i += len(d)
				continue
			}
			n := reNumber.FindString(s[i:])
			if n == "" || (i+len(n) < len(s) && isIdentChar(s[i+len(n)])) {
				return nil, fmt.Errorf("at %d: bad number", i)
			}
			out = append(out, tok{tNumber, n, i})
			i += len(n)
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("at %d: unterminated string", i)
			}
			out = append(out, tok{tString, s[i+1 : j], i})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("at %d: unclosed [", i)
			}
			r := s[i+1 : i+j]
			if !reRange.MatchString(r) {
				return nil, fmt.Errorf("at %d: bad range [%s]", i, r)
			}
			out = append(out, tok{tRange, r, i})
			i += j + 1
		case strings.ContainsRune("(){},", rune(c)):
			out = append(out, tok{tokKind(c), string(c), i})
			i++
		default:
			if i+1 < len(s) {
				two := s[i : i+2]
				switch two {
				case "==", "!=", "<=", ">=", "=~", "!~":
					out = append(out, tok{tOp, two, i})
					i += 2
					continue
				}
			}
			if strings.ContainsRune("+-*/%^<>=", rune(c)) {
				out = append(out, tok{tOp, string(c), i})
				i++
				continue
			}
			return nil, fmt.Errorf("at %d: unexpected %q", i, c)
		}
	}
	return out, nil
}

var aggregations = map[string]bool{"sum": true, "avg": true, "min": true, "max": true, "count": true,
	"group": true, "stddev": true, "stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true}

// functions maps each PromQL function to the argument it needs: "range"
// (a range vector), "counter" (a range vector of counters), "gauge" (a
// range vector of gauges) or "" (anything).
var functions = map[string]string{
	"rate": "counter", "irate": "counter", "increase": "counter", "resets": "counter",
	"deriv": "gauge", "delta": "gauge", "idelta": "gauge", "predict_linear": "gauge",
	"changes": "range", "avg_over_time": "range", "min_over_time": "range", "max_over_time": "range",
	"sum_over_time": "range", "count_over_time": "range", "quantile_over_time": "range",
	"last_over_time": "range", "present_over_time": "range", "stddev_over_time": "range",
	"stdvar_over_time": "range", "absent_over_time": "range",
	"histogram_quantile": "", "abs": "", "absent": "", "ceil": "", "floor": "", "round": "", "clamp": "",
	"clamp_min": "", "clamp_max": "", "scalar": "", "vector": "", "time": "", "timestamp": "",
	"label_replace": "", "label_join": "", "sort": "", "sort_desc": "", "sqrt": "", "exp": "", "ln": "",
	"log2": "", "log10": "", "sgn": "", "day_of_week": "", "hour": "", "minute": "", "month": "", "year": "",
	"days_in_month": "",
}

var binaryKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true}

var labelListKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true}

// exprInfo is what an expression references.
type exprInfo struct {
	metrics  []string
	byLabels map[string]bool // labels of by(...) clauses
	hasBy    bool
}

// checker checks expressions against an inventory; targetLabels are the
// labels Prometheus adds to every scraped series (job, instance and the
// static target labels of prometheus.yml).
type checker struct {
	inv          inventory
	targetLabels map[string]bool
}

func (c *checker) hasLabel(metric, label string) bool {
	if c.targetLabels[label] || label == "__name__" {
		return true
	}
	mi := c.inv[metric]
	return mi != nil && mi.labels[label]
}

// check validates expr and returns what it references.
func (c *checker) check(expr string) (exprInfo, error) {
	info := exprInfo{byLabels: map[string]bool{}}
	toks, err := lex(expr)
	if err != nil {
		return info, err
	}
	if len(toks) == 0 {
		return info, fmt.Errorf("empty expression")
	}
	var labelRefs []string // labels of by/on/... clauses, checked at the end
	// open holds, for each open parenthesis, the function it belongs to
	// ("" for grouping) and the index of its first token.
	type frame struct {
		fn    string
		start int
	}
	var open []frame
	peek := func(i int) tok {
		if i < len(toks) {
			return toks[i]
		}
		return tok{}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch t.kind {
		case tLParen:
			fn := ""
			if i > 0 && toks[i-1].kind == tIdent {
				fn = toks[i-1].text
			}
			open = append(open, frame{fn: fn, start: i + 1})
		case tRParen:
			if len(open) == 0 {
				return info, fmt.Errorf("at %d: unbalanced )", t.pos)
			}
			f := open[len(open)-1]
			open = open[:len(open)-1]
			if need := functions[f.fn]; need != "" {
				if err := c.checkRangeArg(f.fn, need, toks[f.start:i]); err != nil {
					return info, fmt.Errorf("at %d: %v", t.pos, err)
				}
			}
		case tLBrace, tRBrace:
			return info, fmt.Errorf("at %d: label matchers without a metric name", t.pos)
		case tIdent:
			next := peek(i + 1)
			switch {
			case binaryKeywords[t.text]:
			case t.text == "offset":
				if peek(i+1).kind != tDur {
					return info, fmt.Errorf("at %d: offset needs a duration", t.pos)
				}
				i++
			case labelListKeywords[t.text]:
				if next.kind != tLParen {
					if t.text == "group_left" || t.text == "group_right" {
						continue
					}
					return info, fmt.Errorf("at %d: %s needs a label list", t.pos, t.text)
				}
				j := i + 2
				for ; j < len(toks) && toks[j].kind != tRParen; j++ {
					switch toks[j].kind {
					case tIdent:
						labelRefs = append(labelRefs, toks[j].text)
						if t.text == "by" {
							info.byLabels[toks[j].text] = true
						}
					case tComma:
					default:
						return info, fmt.Errorf("at %d: bad label list", toks[j].pos)
					}
				}
				if j == len(toks) {
					return info, fmt.Errorf("at %d: unclosed label list", t.pos)
				}
				if t.text == "by" {
					info.hasBy = true
				}
				i = j
			case aggregations[t.text]:
				if next.kind != tLParen && !(next.kind == tIdent && (next.text == "by" || next.text == "without")) {
					return info, fmt.Errorf("at %d: aggregation %s without (", t.pos, t.text)
				}
			case next.kind == tLParen:
				if _, ok := functions[t.text]; !ok {
					return info, fmt.Errorf("at %d: unknown function %s", t.pos, t.text)
				}
			default:
				if _, ok := c.inv[t.text]; !ok {
					return info, fmt.Errorf("at %d: metric %s is not registered by any service", t.pos, t.text)
				}
				info.metrics = append(info.metrics, t.text)
				if next.kind == tLBrace {
					j, err := c.matchers(t.text, toks, i+2)
					if err != nil {
						return info, err
					}
					i = j
				}
			}
		}
	}
	if len(open) > 0 {
		return info, fmt.Errorf("unbalanced (: %d left open", len(open))
	}
	if len(info.metrics) == 0 {
		return info, fmt.Errorf("no metric referenced")
	}
	for _, l := range labelRefs {
		ok := false
		for _, m := range info.metrics {
			ok = ok || c.hasLabel(m, l)
		}
		if !ok {
			return info, fmt.Errorf("label %q is on none of %v", l, info.metrics)
		}
	}
	return info, nil
}

// matchers checks `label op "value", ...}` starting at toks[i]; it returns
// the index of the closing brace.
func (c *checker) matchers(metric string, toks []tok, i int) (int, error) {
	for ; i < len(toks); i++ {
		t := toks[i]
		switch t.kind {
		case tRBrace:
			return i, nil
		case tComma:
			continue
		case tIdent:
			if i+2 >= len(toks) || toks[i+1].kind != tOp || toks[i+2].kind != tString {
				return i, fmt.Errorf("at %d: want label op \"value\"", t.pos)
			}
			switch toks[i+1].text {
			case "=", "!=", "=~", "!~":
			default:
				return i, fmt.Errorf("at %d: bad matcher operator %s", toks[i+1].pos, toks[i+1].text)
			}
			if strings.HasSuffix(toks[i+1].text, "~") {
				if _, err := regexp.Compile("^(?:" + toks[i+2].text + ")$"); err != nil {
					return i, fmt.Errorf("at %d: bad regexp: %v", toks[i+2].pos, err)
				}
			}
			if !c.hasLabel(metric, t.text) {
				return i, fmt.Errorf("at %d: %s has no label %q", t.pos, metric, t.text)
			}
			i += 2
		default:
			return i, fmt.Errorf("at %d: unexpected %q in label matchers", t.pos, t.text)
		}
	}
	return i, fmt.Errorf("unclosed label matchers of %s", metric)
}

// checkRangeArg checks that the argument of a range function ends with a
// range and, for counter/gauge functions, that its metrics have that kind.
func (c *checker) checkRangeArg(fn, need string, arg []tok) error {
	if len(arg) == 0 || arg[len(arg)-1].kind != tRange {
		return fmt.Errorf("%s needs a range vector, e.g. %s(x[5m])", fn, fn)
	}
	for _, t := range arg {
		mi, ok := c.inv[t.text]
		if t.kind != tIdent || !ok {
			continue
		}
		switch {
		case need == "counter" && mi.kind != "counter":
			return fmt.Errorf("%s over %s, a %s: use it on counters only", fn, t.text, mi.kind)
		case need == "gauge" && mi.kind != "gauge":
			return fmt.Errorf("%s over %s, a %s: use it on gauges only", fn, t.text, mi.kind)
		}
	}
	return nil
}

// checkLabelValues checks a Grafana `label_values(selector, label)` query.
func (c *checker) checkLabelValues(q string) error {
	inner, ok := strings.CutPrefix(strings.TrimSpace(q), "label_values(")
	if !ok || !strings.HasSuffix(inner, ")") {
		return fmt.Errorf("%q: want label_values(selector, label)", q)
	}
	inner = strings.TrimSuffix(inner, ")")
	i := strings.LastIndexByte(inner, ',')
	if i < 0 {
		return fmt.Errorf("%q: want label_values(selector, label)", q)
	}
	sel, label := inner[:i], strings.TrimSpace(inner[i+1:])
	info, err := c.check(sel)
	if err != nil {
		return err
	}
	if !c.hasLabel(info.metrics[0], label) {
		return fmt.Errorf("%q: %s has no label %q", q, info.metrics[0], label)
	}
	return nil
}

func testChecker() *checker {
	inv := inventory{}
	inv.add("agentos_runs_total", "counter", []string{"outcome"})
	inv.add("agentos_run_duration_seconds", "histogram", []string{"outcome"})
	inv.add("agentos_queue_depth", "gauge", nil)
	inv.add("up", "gauge", nil)
	return &checker{inv: inv, targetLabels: map[string]bool{"job": true, "instance": true, "stack_id": true}}
}

func TestCheckerAcceptsAndRefuses(t *testing.T) {
	t.Parallel()
	c := testChecker()
	good := []string{
		`up{job=~"agentos-.*"} == 0`,
		`sum by (job, outcome) (rate(agentos_runs_total{outcome="failed"}[5m])) / sum by (job) (rate(agentos_runs_total[5m])) > 0.2`,
		`histogram_quantile(0.95, sum by (le) (rate(agentos_run_duration_seconds_bucket{stack_id=~"$stack_id"}[$__rate_interval])))`,
		`deriv(agentos_queue_depth[15m]) > 0 and agentos_queue_depth > 20`,
		`max without (instance) (agentos_queue_depth offset 5m)`,
		`sum(increase(agentos_runs_total[$__range])) * 1e3`,
	}
	for _, e := range good {
		if _, err := c.check(e); err != nil {
			t.Errorf("%s: %v", e, err)
		}
	}
	bad := map[string]string{
		`agentos_runs_totl`:                                     "not registered",
		`rate(agentos_runs_total[5m]`:                           "unbalanced",
		`rate(agentos_runs_total[5m]))`:                         "unbalanced",
		`rate(agentos_runs_total)`:                              "range vector",
		`rates(agentos_runs_total[5m])`:                         "unknown function",
		`agentos_runs_total{status="x"}`:                        "no label",
		`sum by (tenant) (agentos_runs_total)`:                  "label \"tenant\"",
		`rate(agentos_queue_depth[5m])`:                         "counters only",
		`deriv(agentos_runs_total[5m])`:                         "gauges only",
		`agentos_runs_total{outcome=~"(("}`:                     "bad regexp",
		`{__name__="agentos_runs_total"}`:                       "without a metric",
		`sum(agentos_runs_total[5x])`:                           "bad range",
		`agentos_runs_total{outcome="failed}`:                   "unterminated",
		`sum agentos_runs_total`:                                "without (",
		`agentos_runs_total{outcome}`:                           "want label op",
		`agentos_runs_total $x`:                                 "unexpected",
		`sum(rate(agentos_run_duration_seconds_bucket[5m]))`:    "",
		`histogram_quantile(0.5, agentos_run_duration_seconds)`: "not registered",
	}
	for e, want := range bad {
		_, err := c.check(e)
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", e, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want error containing %q, got %v", e, want, err)
		}
	}
	if err := c.checkLabelValues(`label_values(up{job=~"agentos-.*"}, stack_id)`); err != nil {
		t.Error(err)
	}
	if err := c.checkLabelValues(`label_values(up, tenant)`); err == nil {
		t.Error("label_values with an unknown label passed")
	}
}

func FuzzCheck(f *testing.F) {
	f.Add(`sum by (job) (rate(agentos_runs_total{outcome="failed"}[5m])) > 0.2`)
	f.Add(`histogram_quantile(0.95, sum by (le) (rate(agentos_run_duration_seconds_bucket[$__rate_interval])))`)
	f.Add(`up{job=~"a"} == 0 and deriv(agentos_queue_depth[1h:5m]) offset 5m`)
	f.Add(`label_values(up, job)`)
	c := testChecker()
	f.Fuzz(func(t *testing.T, expr string) {
		info, err := c.check(expr)
		if err == nil && len(info.metrics) == 0 {
			t.Fatalf("%q passed without referencing a metric", expr)
		}
		_ = c.checkLabelValues(expr)
	})
}
