// Package policy is model-policy's governance engine: PII and secret
// recognizers, per-tenant policies choosing allow, redact or block per type
// for input and output, allow/deny lists on models, backends and tools, and
// custom rules written as CEL expressions over the request.
package policy

import (
	"math/big"
	"net"
	"regexp"
	"sort"
	"strings"
)

// Recognized types, in priority order: when two findings overlap, the one
// of the earlier type wins.
const (
	TypeSecret     = "secret"
	TypeEmail      = "email"
	TypeIBAN       = "iban"
	TypeCreditCard = "credit_card"
	TypeSSN        = "ssn"
	TypeIPAddress  = "ip_address"
	TypePhone      = "phone"
)

// Types lists every recognized type in priority order.
var Types = []string{TypeSecret, TypeEmail, TypeIBAN, TypeCreditCard, TypeSSN, TypeIPAddress, TypePhone}

// Finding is one recognized span of text: [Start, End) in bytes.
type Finding struct {
	Type  string
	Start int
	End   int
}

type recognizer struct {
	typ   string
	re    *regexp.Regexp
	valid func(string) bool
	// may is a cheap necessary condition: when false, re cannot yield a
	// valid finding in the text and is not run.
	may func(textStats) bool
}

// textStats are the cheap facts about a text the recognizers' may
// conditions use (one pass over the bytes).
type textStats struct {
	text   string
	digits int
	at     bool
	colon  bool
	dot    bool
}

func statsOf(text string) textStats {
	st := textStats{text: text}
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c >= '0' && c <= '9':
			st.digits++
		case c == '@':
			st.at = true
		case c == ':':
			st.colon = true
		case c == '.':
			st.dot = true
		}
	}
	return st
}

// secretMarkers are substrings every secret shape starts with.
var secretMarkers = []string{"sk-", "AKIA", "gh", "xox", "AIza", "glpat-", "eyJ"}

func maySecret(st textStats) bool {
	for _, m := range secretMarkers {
		if strings.Contains(st.text, m) {
			return true
		}
	}
	return false
}

var recognizers = []recognizer{
	{TypeSecret, regexp.MustCompile(`\b(?:sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_\-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|xox[baprs]-[A-Za-z0-9\-]{10,}|AIza[0-9A-Za-z_\-]{35}|glpat-[A-Za-z0-9_\-]{20,}|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,})`), nil, maySecret},
	{TypeEmail, regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}`), nil,
		func(st textStats) bool { return st.at }},
	{TypeIBAN, regexp.MustCompile(`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b`), validIBAN,
		func(st textStats) bool { return st.digits >= 2 }},
	{TypeCreditCard, regexp.MustCompile(`\b\d(?:[ \-]?\d){12,18}\b`), validCard,
		func(st textStats) bool { return st.digits >= 13 }},
	{TypeSSN, regexp.MustCompile(`\b\d{3}[- ]\d{2}[- ]\d{4}\b`), validSSN,
		func(st textStats) bool { return st.digits >= 9 }},
	{TypeIPAddress, regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}\b|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?|::(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4}`), validIP,
		func(st textStats) bool { return st.colon || (st.dot && st.digits >= 4) }},
	{TypePhone, regexp.MustCompile(`(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]\d{2,4}){1,4}\b|\+\d{8,15}\b|\b\d{10}\b`), validPhone,
		func(st textStats) bool { return st.digits >= 10 }}, // validPhone needs 10+ digits
}

// Scan returns the non-overlapping findings in text, ordered by position.
func Scan(text string) []Finding { return scan(text, true) }

// scan is Scan; prefilter false runs every recognizer (the fuzz target
// checks that the cheap conditions never change the findings).
func scan(text string, prefilter bool) []Finding {
	var taken []Finding
	overlaps := func(s, e int) bool {
		for _, f := range taken {
			if s < f.End && f.Start < e {
				return true
			}
		}
		return false
	}
	if text == "" {
		return nil
	}
	st := statsOf(text)
	for _, r := range recognizers {
		if prefilter && !r.may(st) {
			continue
		}
		for _, m := range r.re.FindAllStringIndex(text, -1) {
			s, e := m[0], m[1]
			if r.valid != nil && !r.valid(text[s:e]) {
				continue
			}
			if overlaps(s, e) {
				continue
			}
			taken = append(taken, Finding{Type: r.typ, Start: s, End: e})
		}
	}
	sort.Slice(taken, func(i, j int) bool { return taken[i].Start < taken[j].Start })
	return taken
}

func digits(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// Luhn reports whether the digits of s pass the Luhn checksum.
func Luhn(s string) bool {
	d := digits(s)
	if d == "" {
		return false
	}
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if double {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		double = !double
	}
	return sum%10 == 0
}

func validCard(s string) bool {
	d := digits(s)
	if len(d) < 13 || len(d) > 19 || strings.Trim(d, "0") == "" {
		return false
	}
	return Luhn(d)
}

func validSSN(s string) bool {
	d := digits(s)
	if len(d) != 9 {
		return false
	}
	area, group, serial := d[:3], d[3:5], d[5:]
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

func validIBAN(s string) bool {
	s = strings.ReplaceAll(s, " ", "")
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	r := s[4:] + s[:4]
	var b strings.Builder
	for _, c := range r {
		switch {
		case c >= '0' && c <= '9':
			b.WriteRune(c)
		case c >= 'A' && c <= 'Z':
			b.WriteString(big.NewInt(int64(c - 'A' + 10)).String())
		default:
			return false
		}
	}
	n, ok := new(big.Int).SetString(b.String(), 10)
	return ok && new(big.Int).Mod(n, big.NewInt(97)).Int64() == 1
}

func validIP(s string) bool {
	ip := net.ParseIP(s)
	if ip == nil {
		return false
	}
	if ip.To4() == nil {
		return strings.Count(s, ":") >= 2
	}
	return true
}

func validPhone(s string) bool {
	d := digits(s)
	if len(d) < 10 || len(d) > 15 {
		return false
	}
	// A bare run of digits is a phone number only at exactly 10 digits or with a '+'.
	return strings.ContainsAny(s, " .-()+") || len(d) == 10
}

// Redact replaces each finding whose type is in types with
// "[REDACTED:<type>]" and returns the new text and the count per type.
func Redact(text string, findings []Finding, types map[string]bool) (string, map[string]int) {
	counts := map[string]int{}
	var b strings.Builder
	last := 0
	for _, f := range findings {
		if !types[f.Type] {
			continue
		}
		b.WriteString(text[last:f.Start])
		b.WriteString("[REDACTED:" + f.Type + "]")
		last = f.End
		counts[f.Type]++
	}
	b.WriteString(text[last:])
	return b.String(), counts
}
