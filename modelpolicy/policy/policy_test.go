package policy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func types(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Type)
	}
	return out
}

func TestRecognizers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		text string
		want []string
	}{
		{"email", "write to jane.doe+x@mail.example.co.uk now", []string{TypeEmail}},
		{"phone us", "call (415) 555-0100 today", []string{TypePhone}},
		{"phone intl", "call +44 20 7946 0958", []string{TypePhone}},
		{"ssn", "ssn 123-45-6789", []string{TypeSSN}},
		{"invalid ssn", "ssn 000-12-3456 and 666-12-3456", nil},
		{"card luhn ok", "card 4111-1111-1111-1111", []string{TypeCreditCard}},
		{"card luhn bad", "card 4111 1111 1111 1112", nil},
		{"iban", "iban DE89 3704 0044 0532 0130 00", []string{TypeIBAN}},
		{"iban bad checksum", "iban DE00370400440532013000", nil},
		{"ipv4", "host 192.168.1.20 is up", []string{TypeIPAddress}},
		{"not ipv4", "version 999.1.1.1", nil},
		{"ipv6", "addr 2001:db8::8a2e:370:7334 ok", []string{TypeIPAddress}},
		{"openai key", "key sk-proj-abcdefghijklmnopqrstuvwxyz012345", []string{TypeSecret}},
		{"aws key", "AKIAIOSFODNN7EXAMPLE", []string{TypeSecret}},
		{"github token", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", []string{TypeSecret}},
		{"jwt", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", []string{TypeSecret}},
		{"plain", "nothing sensitive here, version 1.2.3, 42 apples", nil},
		{"mixed", "a@b.io 123-45-6789 10.0.0.1", []string{TypeEmail, TypeSSN, TypeIPAddress}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, types(Scan(tc.text)))
		})
	}
}

func TestLuhn(t *testing.T) {
	t.Parallel()
	require.True(t, Luhn("4111111111111111"))
	require.True(t, Luhn("5500 0000 0000 0004"))
	require.False(t, Luhn("1234567812345678"))
	require.False(t, Luhn(""))
}

func TestApplyTextActions(t *testing.T) {
	t.Parallel()
	p := &Policy{ID: "p", Input: map[string]string{TypeEmail: ActionRedact, TypeSSN: ActionBlock}, Output: map[string]string{TypeEmail: ActionAllow}}
	require.NoError(t, p.Compile())
	o := NewOutcome()
	out := p.ApplyText(StageInput, "a@b.io and c@d.io", o)
	require.Equal(t, "[REDACTED:email] and [REDACTED:email]", out)
	require.Equal(t, 2, o.Redactions[TypeEmail])
	require.Equal(t, DecisionRedacted, o.Decision())
	o = NewOutcome()
	p.ApplyText(StageInput, "123-45-6789", o)
	require.Equal(t, DecisionBlocked, o.Decision())
	require.Equal(t, []string{"input_ssn_blocked"}, o.Wire().Reasons)
	o = NewOutcome()
	require.Equal(t, "a@b.io", p.ApplyText(StageOutput, "a@b.io", o))
	require.Equal(t, DecisionAllowed, o.Decision())
	require.Equal(t, 1, o.Found[TypeEmail])
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	for name, p := range map[string]*Policy{
		"bad type":   {Input: map[string]string{"dna": ActionBlock}},
		"bad action": {Input: map[string]string{TypeEmail: "shred"}},
		"bad cel":    {Rules: []Rule{{Expression: "request.text ==="}}},
		"not bool":   {Rules: []Rule{{Expression: `"x"`}}},
		"bad stage":  {Rules: []Rule{{Expression: "true", Stage: "later"}}},
		"empty expr": {Rules: []Rule{{Expression: " "}}},
	} {
		require.Error(t, p.Compile(), name)
	}
}

func TestRules(t *testing.T) {
	t.Parallel()
	p := &Policy{ID: "p", Rules: []Rule{
		{Name: "big", Expression: `request.max_output_tokens > 1000`, Reason: "too many tokens"},
		{Name: "flagged", Expression: `request.text.contains("secret project")`, Action: "flag", Reason: "mentions the project"},
		{Name: "missing", Expression: `request.nope == 1`, Action: "flag"},
		{Name: "out", Expression: `request.output_text.contains("forbidden")`, Stage: StageOutput},
	}}
	require.NoError(t, p.Compile())
	vars := map[string]any{"max_output_tokens": int64(10), "text": "the secret project", "nope": int64(1)}
	o := NewOutcome()
	p.EvaluateRules(StageInput, vars, o)
	require.False(t, o.Blocked)
	require.Equal(t, []string{"rule:flagged: mentions the project", "rule:missing: request.nope == 1"}, o.Reasons)
	o = NewOutcome()
	delete(vars, "nope")
	vars["max_output_tokens"] = int64(5000)
	p.EvaluateRules(StageInput, vars, o)
	require.True(t, o.Blocked)
	require.Contains(t, strings.Join(o.Reasons, "|"), "rule:big: too many tokens")
	require.Contains(t, strings.Join(o.Reasons, "|"), "rule:missing: evaluation failed", "fail closed")
	o = NewOutcome()
	p.EvaluateRules(StageOutput, map[string]any{"output_text": "forbidden words"}, o)
	require.True(t, o.Blocked)
}

func TestLists(t *testing.T) {
	t.Parallel()
	l := Lists{Allow: []string{"builtin/*", "openai/gpt-4o-mini"}, Deny: []string{"builtin/echo-premium"}}
	require.True(t, l.Permits("builtin/echo-fast"))
	require.True(t, l.Permits("openai/gpt-4o-mini"))
	require.False(t, l.Permits("openai/gpt-4o"))
	require.False(t, l.Permits("builtin/echo-premium"))
	require.True(t, Lists{}.Permits("anything"))
}

func FuzzScanRedact(f *testing.F) {
	for _, s := range []string{"a@b.io", "4111 1111 1111 1111", "123-45-6789", "DE89 3704 0044 0532 0130 00", "::1", "+1 415 555 0100", "sk-abcdefghijklmnopqrstuvwx", ""} {
		f.Add(s)
	}
	all := map[string]bool{}
	for _, t := range Types {
		all[t] = true
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs := Scan(s)
		last := 0
		for _, x := range fs {
			if x.Start < last || x.End <= x.Start || x.End > len(s) {
				t.Fatalf("bad finding %+v in %q", x, s)
			}
			last = x.End
		}
		out, counts := Redact(s, fs, all)
		n := 0
		for _, c := range counts {
			n += c
		}
		if n != len(fs) {
			t.Fatalf("redacted %d of %d findings", n, len(fs))
		}
		if len(fs) == 0 && out != s {
			t.Fatalf("text changed without findings")
		}
	})
}

// TestApplyTextRedactsOriginalBytes: matching happens on normalised text,
// redaction replaces exactly the original characters (full-width, with
// zero-width spaces and soft hyphens) and leaves the rest byte for byte.
func TestApplyTextRedactsOriginalBytes(t *testing.T) {
	t.Parallel()
	p := DefaultPolicies()["pol_default"]
	require.NoError(t, p.Compile())
	cases := []struct{ in, want string }{
		{"mail ja\u200bne\u00ad.doe@exam\u200bple.com — ok", "mail [REDACTED:email] — ok"},
		{"card ４１１１ １１１１ １１１１ １１１１ exp", "card [REDACTED:credit_card] exp"},
		{"écrire à bob (at) example (dot) org s’il vous plaît", "écrire à [REDACTED:email] s’il vous plaît"},
		{"SSN 123456789, merci", "SSN [REDACTED:ssn], merci"},
		{"key AKIA IOSF ODNN 7EXA MPLE.", "key [REDACTED:secret]."},
		{"tel 415.555.0100 / 415_555_0100", "tel [REDACTED:phone] / [REDACTED:phone]"},
		{"order 1234567890 on 2024-03-18 10:30, v2.14.3", "order 1234567890 on 2024-03-18 10:30, v2.14.3"},
	}
	for _, tc := range cases {
		o := NewOutcome()
		require.Equal(t, tc.want, p.ApplyText(StageInput, tc.in, o), tc.in)
	}
}
