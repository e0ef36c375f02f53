package policy

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/google/cel-go/cel"

	"github.com/nexixai/agentos/internal/modelport"
)

// Actions a policy takes on a recognized type.
const (
	ActionAllow  = "allow"
	ActionRedact = "redact"
	ActionBlock  = "block"
)

// Decisions of a policy outcome (CONTRACT §5).
const (
	DecisionAllowed  = "allowed"
	DecisionRedacted = "redacted"
	DecisionBlocked  = "blocked"
)

// Stages a policy applies to.
const (
	StageInput  = "input"
	StageOutput = "output"
)

// Lists is an allow/deny pair of glob patterns (path.Match syntax, "*"
// matches anything). An empty Allow allows everything; Deny wins.
type Lists struct {
	Allow []string `yaml:"allow" json:"allow,omitempty"`
	Deny  []string `yaml:"deny" json:"deny,omitempty"`
}

// Permits reports whether name passes the lists.
func (l Lists) Permits(name string) bool {
	if matchAny(l.Deny, name) {
		return false
	}
	return len(l.Allow) == 0 || matchAny(l.Allow, name)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if p == "*" || p == name {
			return true
		}
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// Rule is a custom rule: a CEL expression over the request (variable
// `request`, see RuleVars) that, when true, blocks the call (Action
// "block") or only adds its reason (Action "flag").
type Rule struct {
	Name       string `yaml:"name"`
	Expression string `yaml:"expression"`
	Action     string `yaml:"action"` // block (default) or flag
	Reason     string `yaml:"reason"`
	// Stage is input (default), output or any.
	Stage string `yaml:"stage"`

	prg cel.Program
}

// Policy is one named ruleset. Input and Output map a recognized type to an
// action; types not named take Default (allow when empty).
type Policy struct {
	ID          string            `yaml:"id"`
	Description string            `yaml:"description"`
	Default     string            `yaml:"default"`
	Input       map[string]string `yaml:"input"`
	Output      map[string]string `yaml:"output"`
	Models      Lists             `yaml:"models"`
	Backends    Lists             `yaml:"backends"`
	Tools       Lists             `yaml:"tools"`
	Rules       []Rule            `yaml:"rules"`
}

var celEnv = func() *cel.Env {
	env, err := cel.NewEnv(cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		panic(err)
	}
	return env
}()

// Compile checks the policy and compiles its rules. It must be called
// before Evaluate.
func (p *Policy) Compile() error {
	for stage, m := range map[string]map[string]string{StageInput: p.Input, StageOutput: p.Output} {
		for typ, act := range m {
			if !slices.Contains(Types, typ) {
				return fmt.Errorf("policy %s: %s: unknown type %q (want one of %s)", p.ID, stage, typ, strings.Join(Types, ", "))
			}
			if !validAction(act) {
				return fmt.Errorf("policy %s: %s.%s: unknown action %q (want allow, redact or block)", p.ID, stage, typ, act)
			}
		}
	}
	if p.Default != "" && !validAction(p.Default) {
		return fmt.Errorf("policy %s: default: unknown action %q", p.ID, p.Default)
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Name == "" {
			r.Name = fmt.Sprintf("rule_%d", i+1)
		}
		switch r.Action {
		case "":
			r.Action = ActionBlock
		case ActionBlock, "flag":
		default:
			return fmt.Errorf("policy %s: rule %s: unknown action %q (want block or flag)", p.ID, r.Name, r.Action)
		}
		switch r.Stage {
		case "":
			r.Stage = StageInput
		case StageInput, StageOutput, "any":
		default:
			return fmt.Errorf("policy %s: rule %s: unknown stage %q", p.ID, r.Name, r.Stage)
		}
		prg, err := CompileExpression(r.Expression)
		if err != nil {
			return fmt.Errorf("policy %s: rule %s: %w", p.ID, r.Name, err)
		}
		r.prg = prg
	}
	return nil
}

// CompileExpression compiles a CEL rule expression; it must be boolean.
func CompileExpression(expr string) (cel.Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, fmt.Errorf("empty expression")
	}
	ast, iss := celEnv.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("expression must be boolean, is %s", ast.OutputType())
	}
	return celEnv.Program(ast, cel.CostLimit(100000))
}

func validAction(a string) bool { return a == ActionAllow || a == ActionRedact || a == ActionBlock }

// ActionFor returns the action for a type at a stage.
func (p *Policy) ActionFor(stage, typ string) string {
	m := p.Input
	if stage == StageOutput {
		m = p.Output
	}
	if a, ok := m[typ]; ok {
		return a
	}
	if p.Default != "" {
		return p.Default
	}
	return ActionAllow
}

// RedactsOrBlocks reports whether any type at stage is not allowed.
func (p *Policy) RedactsOrBlocks(stage string) bool {
	for _, t := range Types {
		if p.ActionFor(stage, t) != ActionAllow {
			return true
		}
	}
	return false
}

// Outcome accumulates a policy outcome across texts and stages.
type Outcome struct {
	Blocked    bool
	Reasons    []string
	Redactions map[string]int
	// Found counts every finding per type, whatever the action.
	Found map[string]int
}

// NewOutcome returns an empty outcome.
func NewOutcome() *Outcome { return &Outcome{Redactions: map[string]int{}, Found: map[string]int{}} }

// Reason appends a reason once.
func (o *Outcome) Reason(r string) {
	if !slices.Contains(o.Reasons, r) {
		o.Reasons = append(o.Reasons, r)
	}
}

// Decision is blocked, redacted or allowed.
func (o *Outcome) Decision() string {
	switch {
	case o.Blocked:
		return DecisionBlocked
	case len(o.Redactions) > 0:
		return DecisionRedacted
	}
	return DecisionAllowed
}

// Wire renders the outcome as the contract's policy_outcome.
func (o *Outcome) Wire() modelport.PolicyOutcome {
	out := modelport.PolicyOutcome{Decision: o.Decision(), Reasons: append([]string{}, o.Reasons...), Redactions: []modelport.Redaction{}}
	keys := make([]string, 0, len(o.Redactions))
	for k := range o.Redactions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out.Redactions = append(out.Redactions, modelport.Redaction{Type: k, Count: o.Redactions[k]})
	}
	return out
}

// ApplyText scans text at stage, records findings in o, and returns the
// text with redactions applied. A type whose action is block marks o
// blocked with reason "<stage>_<type>_blocked".
func (p *Policy) ApplyText(stage, text string, o *Outcome) string {
	findings := Scan(text)
	if len(findings) == 0 {
		return text
	}
	redact := map[string]bool{}
	for _, f := range findings {
		o.Found[f.Type]++
		switch p.ActionFor(stage, f.Type) {
		case ActionBlock:
			o.Blocked = true
			o.Reason(stage + "_" + f.Type + "_blocked")
		case ActionRedact:
			redact[f.Type] = true
		}
	}
	if len(redact) == 0 {
		return text
	}
	out, counts := RedactStable(text, findings, redact)
	for t, n := range counts {
		if o.Redactions[t] == 0 {
			o.Reason(stage + "_" + t + "_redacted")
		}
		o.Redactions[t] += n
	}
	return out
}

// EvaluateRules runs the rules of stage against vars ("request" in CEL).
// pii counts from o.Found are added as request.pii. A true block rule marks
// o blocked with reason "rule:<name>: <reason>"; a rule that fails to
// evaluate blocks too (fail closed).
func (p *Policy) EvaluateRules(stage string, vars map[string]any, o *Outcome) {
	if len(p.Rules) == 0 {
		return
	}
	pii := map[string]any{}
	for _, t := range Types {
		pii[t] = int64(o.Found[t])
	}
	req := make(map[string]any, len(vars)+2)
	for k, v := range vars {
		req[k] = v
	}
	req["pii"] = pii
	req["stage"] = stage
	for _, r := range p.Rules {
		if r.Stage != "any" && r.Stage != stage {
			continue
		}
		if r.prg == nil {
			o.Blocked = true
			o.Reason("rule:" + r.Name + ": not compiled")
			continue
		}
		val, _, err := r.prg.Eval(map[string]any{"request": req})
		if err != nil {
			o.Blocked = true
			o.Reason("rule:" + r.Name + ": evaluation failed: " + err.Error())
			continue
		}
		hit, ok := val.Value().(bool)
		if !ok {
			o.Blocked = true
			o.Reason("rule:" + r.Name + ": did not yield a boolean")
			continue
		}
		if !hit {
			continue
		}
		reason := r.Reason
		if reason == "" {
			reason = r.Expression
		}
		o.Reason("rule:" + r.Name + ": " + reason)
		if r.Action == ActionBlock {
			o.Blocked = true
		}
	}
}

// DefaultPolicies returns the built-in policies: pol_default (redact PII and
// secrets both ways, allow IP addresses), pol_strict (block secrets, SSNs
// and card numbers; redact the rest) and pol_permissive (allow all).
func DefaultPolicies() map[string]*Policy {
	redactAll := map[string]string{TypeEmail: ActionRedact, TypePhone: ActionRedact, TypeSSN: ActionRedact,
		TypeCreditCard: ActionRedact, TypeIBAN: ActionRedact, TypeIPAddress: ActionAllow, TypeSecret: ActionRedact}
	strict := map[string]string{TypeEmail: ActionRedact, TypePhone: ActionRedact, TypeSSN: ActionBlock,
		TypeCreditCard: ActionBlock, TypeIBAN: ActionRedact, TypeIPAddress: ActionRedact, TypeSecret: ActionBlock}
	ps := map[string]*Policy{
		"pol_default": {ID: "pol_default", Description: "redact PII and secrets in input and output",
			Input: clone(redactAll), Output: clone(redactAll)},
		"pol_strict": {ID: "pol_strict", Description: "block secrets, SSNs and card numbers; redact other PII",
			Input: clone(strict), Output: clone(strict)},
		"pol_permissive": {ID: "pol_permissive", Description: "allow everything (recognizers still count findings)",
			Default: ActionAllow},
	}
	for _, p := range ps {
		if err := p.Compile(); err != nil {
			panic(err)
		}
	}
	return ps
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
