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
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
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

// Finding is one recognized span of the ORIGINAL text: [Start, End) in
// bytes, always on rune boundaries.
type Finding struct {
	Type  string
	Start int
	End   int
}

// normText is text after NFKC normalisation with Unicode format characters
// (category Cf: zero-width spaces and joiners, soft hyphens, bidi marks)
// removed and Unicode dashes folded to '-'. Obfuscations such as
// full-width digits or a zero-width space inside an address then look like
// the plain form. from[i], to[i] is the range of original bytes that byte i
// of s came from, so a match in s redacts exactly the original characters.
// Both are nil when s is the original text unchanged.
type normText struct {
	s        string
	from, to []int
}

func normalize(text string) normText {
	plain := true
	for i := 0; i < len(text); i++ {
		if text[i] >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain { // ASCII is NFKC already and has no format characters
		return normText{s: text}
	}
	var b strings.Builder
	b.Grow(len(text))
	from := make([]int, 0, len(text))
	to := make([]int, 0, len(text))
	var it norm.Iter
	it.InitString(norm.NFKC, text)
	for !it.Done() {
		p := it.Pos()
		seg := it.Next()
		q := it.Pos()
		for len(seg) > 0 {
			r, n := utf8.DecodeRune(seg)
			chunk := seg[:n]
			seg = seg[n:]
			switch {
			case r != utf8.RuneError && unicode.Is(unicode.Cf, r):
				continue
			case unicode.Is(unicode.Pd, r) || r == '\u2212': // dashes, minus sign
				chunk = []byte{'-'}
			}
			b.Write(chunk)
			for range chunk {
				from = append(from, p)
				to = append(to, q)
			}
		}
	}
	return normText{s: b.String(), from: from, to: to}
}

// original maps [s, e) of the normalised text to the original text.
func (n normText) original(s, e int) (int, int) {
	if n.from == nil {
		return s, e
	}
	return n.from[s], n.to[e-1]
}

// checkFunc validates a regexp match [s, e) of t and may shorten it; it
// returns the accepted end or ok false.
type checkFunc func(t string, s, e int) (end int, ok bool)

type recognizer struct {
	typ   string
	re    *regexp.Regexp // anchored at the start: tried at each candidate start
	check checkFunc
	// start reports whether a match may begin at byte i of t; the checks
	// reject a match glued to a word on its left, so only word starts are
	// tried (Go's regexp is slow to scan for a pattern without a literal
	// prefix, and this keeps the work per byte small).
	start func(t string, i int) bool
	// may is a cheap necessary condition: when false, re cannot yield a
	// valid finding in the text and is not run.
	may func(textStats) bool
}

// textStats are the cheap facts about a text the recognizers' may
// conditions use (one pass over the bytes).
type textStats struct {
	text   string
	digits int
	at     bool // '@', or the word "at" in any case as atSpelled allows it
	colon  bool
	dot    bool // '.', or "dot" in any case (dotSpelled)
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
		case (c == 'a' || c == 'A') && i+1 < len(text) && (text[i+1] == 't' || text[i+1] == 'T'):
			// atSpelled has "at" only between blanks or inside brackets,
			// so "weather" or "that" never make an address.
			if i > 0 && strings.IndexByte(" \t([{<", text[i-1]) >= 0 &&
				i+2 < len(text) && strings.IndexByte(" \t)]}>", text[i+2]) >= 0 {
				st.at = true
			}
		case (c == 'd' || c == 'D') && i+2 < len(text) && (text[i+1] == 'o' || text[i+1] == 'O') && (text[i+2] == 't' || text[i+2] == 'T'):
			st.dot = true
		}
	}
	return st
}

// secretMarkers are substrings every secret shape starts with.
var secretMarkers = []string{"sk-", "AKIA", "A K I A", "A-K-I-A", "A_K_I_A", "gh", "xox", "AIza", "glpat-", "eyJ"}

func maySecret(st textStats) bool {
	for _, m := range secretMarkers {
		if strings.Contains(st.text, m) {
			return true
		}
	}
	return false
}

// Separators people put inside numbers: one of . - _ / \ with optional
// spaces around it, or one or two spaces (tabs) alone.
const numSep = `(?:[ \t]{0,2}[.\-_/\\][ \t]{0,2}|[ \t]{1,2})`

// Spelled-out '@' and '.' as used to dodge address harvesters: "(at)",
// "[at]", "{at}", "<at>", " at ", likewise dot; '@' itself may have spaces.
const (
	atSpelled  = `(?:[ \t]*@[ \t]*|[ \t]*[\(\[\{<][ \t]*(?i:at)[ \t]*[\)\]\}>][ \t]*|[ \t]+(?i:at)[ \t]+)`
	dotSpelled = `(?:\.|[ \t]*[\(\[\{<][ \t]*(?i:dot)[ \t]*[\)\]\}>][ \t]*|[ \t]+(?i:dot)[ \t]+)`
	localAtom  = `[A-Za-z0-9_%+\-]{1,64}`
	// Bounded (RFC 5321: local part <= 64, label <= 63 bytes) so one
	// attempt cannot run over the rest of a long "a dot a dot ..." text.
	emailRE = localAtom + `(?:` + dotSpelled + localAtom + `){0,8}` + atSpelled +
		`[A-Za-z0-9\-]{1,63}(?:` + dotSpelled + `[A-Za-z0-9\-]{1,63}){0,6}` + dotSpelled + `[A-Za-z]{2,24}`
)

var recognizers = []recognizer{
	{TypeSecret, anchored(`(?:sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_\-]{20,}|A(?:[ \t\-_]?K[ \t\-_]?I[ \t\-_]?A|KIA)(?:[ \t\-_]?[0-9A-Z]){16}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|xox[baprs]-[A-Za-z0-9\-]{10,}|AIza[0-9A-Za-z_\-]{35}|glpat-[A-Za-z0-9_\-]{20,}|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,})\b`), checkSecret, startSecret, maySecret},
	{TypeEmail, anchored(emailRE), checkEmail, startEmail,
		func(st textStats) bool { return st.at && st.dot }}, // the domain needs a dot
	{TypeIBAN, anchored(`[A-Z]{2}\d{2}(?:[ \t\-.]?[A-Z0-9]){11,30}`), checkIBAN, startUpper,
		func(st textStats) bool { return st.digits >= 2 }},
	{TypeCreditCard, anchored(`\d(?:` + numSep + `?\d){12,18}`), checkCard, startDigit,
		func(st textStats) bool { return st.digits >= 13 }},
	{TypeSSN, anchored(`\d(?:` + numSep + `?\d){8}`), checkSSN, startDigit,
		func(st textStats) bool { return st.digits >= 9 }},
	{TypeIPAddress, anchored(`\d{1,3}(?:(?:\.|\[\.\]|\(\.\)|\[(?i:dot)\]|\((?i:dot)\))\d{1,3}){3}|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?|::(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4}`), checkIP, startIP,
		func(st textStats) bool { return st.colon || st.digits >= 4 }},
	{TypePhone, anchored(`(?:\+[ \t]?\d{1,3}` + numSep + `?)?(?:\(\d{1,4}\)` + numSep + `?)?\d{2,4}(?:` + numSep + `\d{1,4}){1,6}|\+\d{8,15}|\d{10}`), checkPhone, startPhone,
		func(st textStats) bool { return st.digits >= 10 }}, // a phone needs 10+ digits
}

// Scan returns the non-overlapping findings in text, ordered by position,
// as byte ranges of text itself (not of its normalised form).
func Scan(text string) []Finding { return scan(text, true) }

// scan is Scan; prefilter false runs every recognizer (the fuzz target
// checks that the cheap conditions never change the findings).
func scan(text string, prefilter bool) []Finding {
	if text == "" {
		return nil
	}
	n := normalize(text)
	var taken []Finding // in normalised coordinates
	overlaps := func(s, e int) bool {
		for _, f := range taken {
			if s < f.End && f.Start < e {
				return true
			}
		}
		return false
	}
	st := statsOf(n.s)
	for _, r := range recognizers {
		if prefilter && !r.may(st) {
			continue
		}
		for _, m := range r.find(n.s) {
			if overlaps(m[0], m[1]) {
				continue
			}
			taken = append(taken, Finding{Type: r.typ, Start: m[0], End: m[1]})
		}
	}
	sort.Slice(taken, func(i, j int) bool { return taken[i].Start < taken[j].Start })
	out := taken[:0]
	last := 0
	for _, f := range taken {
		f.Start, f.End = n.original(f.Start, f.End)
		// One original character can expand to several (a ligature); two
		// findings inside it would overlap in the original: keep the first.
		if f.Start < last {
			continue
		}
		out = append(out, f)
		last = f.End
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// find returns r's accepted matches in t, trying each candidate start in
// turn, so a rejected candidate cannot hide a good one that starts inside
// it ("1234 4111 1111 1111 1111").
func (r recognizer) find(t string) [][2]int {
	var out [][2]int
	for pos := 0; pos < len(t); pos++ {
		if !r.start(t, pos) {
			continue
		}
		loc := r.re.FindStringIndex(t[pos:])
		if loc == nil {
			continue
		}
		if e, ok := r.check(t, pos, pos+loc[1]); ok && e > pos {
			out = append(out, [2]int{pos, e})
			pos = e - 1
		}
	}
	return out
}

func anchored(re string) *regexp.Regexp { return regexp.MustCompile(`^(?:` + re + `)`) }

func isWord(c byte) bool { return isAlnum(c) || c == '_' }

func startSecret(t string, i int) bool {
	return strings.IndexByte("sAgxe", t[i]) >= 0 && (i == 0 || !isWord(t[i-1]))
}

func startEmail(t string, i int) bool {
	return (isAlnum(t[i]) || strings.IndexByte("_%+-", t[i]) >= 0) &&
		(i == 0 || !isAlnum(t[i-1]) && strings.IndexByte("._%+-", t[i-1]) < 0)
}

func startUpper(t string, i int) bool {
	return t[i] >= 'A' && t[i] <= 'Z' && (i == 0 || !isAlnum(t[i-1]))
}

func startDigit(t string, i int) bool { return isDigit(t[i]) && (i == 0 || !isAlnum(t[i-1])) }

func startIP(t string, i int) bool {
	c := t[i]
	return (isAlnum(c) || c == ':') && (i == 0 || !isAlnum(t[i-1]) && t[i-1] != ':')
}

func startPhone(t string, i int) bool {
	return (isDigit(t[i]) || t[i] == '+' || t[i] == '(') && (i == 0 || !isAlnum(t[i-1]))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlnum(c byte) bool {
	return isDigit(c) || (c|0x20) >= 'a' && (c|0x20) <= 'z'
}

func isNumSep(c byte) bool {
	switch c {
	case ' ', '\t', '.', '-', '_', '/', '\\':
		return true
	}
	return false
}

// digitBefore reports whether the number at s continues to its left: an
// alphanumeric right before it, or a digit behind a few separators (a
// match starting inside a longer number).
func digitBefore(t string, s int) bool {
	if s > 0 && isAlnum(t[s-1]) {
		return true
	}
	for i := s - 1; i >= 0 && i >= s-5; i-- {
		if isDigit(t[i]) {
			return true
		}
		if !isNumSep(t[i]) {
			return false
		}
	}
	return false
}

// digitsAfter counts the digits of the number run continuing at e through
// separators (0 when a non-separator comes first); alnum reports a letter
// or digit right at e.
func digitsAfter(t string, e int) (n int, alnum bool) {
	if e < len(t) && isAlnum(t[e]) {
		alnum = true
	}
	gap := 0
	for i := e; i < len(t); i++ {
		switch {
		case isDigit(t[i]):
			n++
			gap = 0
		case isNumSep(t[i]) && gap < 5:
			gap++
		default:
			return n, alnum
		}
	}
	return n, alnum
}

// digitGroups returns the lengths of the digit runs in s.
func digitGroups(s string) []int {
	var g []int
	run := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			run++
			continue
		}
		if run > 0 {
			g = append(g, run)
			run = 0
		}
	}
	if run > 0 {
		g = append(g, run)
	}
	return g
}

// contextBefore reports whether one of words occurs (case-insensitively,
// as a word start) within window bytes before s.
func contextBefore(t string, s, window int, words []string) bool {
	lo := max(s-window, 0)
	w := strings.ToLower(t[lo:s])
	for _, k := range words {
		for i := strings.Index(w, k); i >= 0; {
			// "[REDACTED:phone]" left by an earlier redaction is no context.
			label := i >= 9 && w[i-9:i] == "redacted:"
			if !label && (i == 0 && lo == 0 || i > 0 && !isAlnum(w[i-1]) || i == 0 && !isAlnum(t[lo-1])) {
				return true
			}
			j := strings.Index(w[i+1:], k)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return false
}

func checkSecret(t string, s, e int) (int, bool) { return e, true }

// Words that commonly precede " at " in prose, so "look at example dot com"
// is not read as an address.
var atStopwords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a am an and are arrive arrived arrives available based be begin begins buy
		careers download downloads email emailed find found get go here home i is it jobs live lives located look
		looked looking me meet meeting met more now online only or our price priced rate rates read sale see shop
		start starts stay staying stop the them there they this us visit was we were what where work working works
		you your contact reach info more details page site website blog`) {
		atStopwords[w] = true
	}
	for _, t := range strings.Fields(`com org net edu gov mil int io co uk de fr it es nl be ch at se no dk fi pl cz
		ca us au nz jp cn in br ru eu info biz me ai app dev tv xyz name pro`) {
		knownTLDs[t] = true
	}
}

var knownTLDs = map[string]bool{}

var (
	plainAt     = regexp.MustCompile(`[ \t]+(?i:at)[ \t]+`)
	bracketAt   = regexp.MustCompile(`[\(\[\{<][ \t]*(?i:at)[ \t]*[\)\]\}>]`)
	lastDotWord = regexp.MustCompile(`(\.|(?i:dot)[ \t]*[\)\]\}>]?[ \t]*)([A-Za-z]{2,})$`)
)

func checkEmail(t string, s, e int) (int, bool) {
	if s > 0 && (isAlnum(t[s-1]) || strings.IndexByte("._%+-", t[s-1]) >= 0) || e < len(t) && (isWord(t[e]) || strings.IndexByte("%+-@", t[e]) >= 0) {
		return 0, false
	}
	m := t[s:e]
	at := strings.IndexByte(m, '@')
	spelledAt := at < 0 && bracketAt.FindStringIndex(m) == nil
	last := lastDotWord.FindStringSubmatch(m)
	if last == nil {
		return 0, false
	}
	spelledDot := last[1] != "."
	if spelledAt {
		loc := plainAt.FindStringIndex(m)
		if loc == nil {
			return 0, false
		}
		local := strings.ToLower(m[:loc[0]])
		if i := strings.LastIndexAny(local, " \t."); i >= 0 {
			local = local[i+1:]
		}
		// "12 at 5 dot com" is prose: a spelled-out address has a
		// word before " at ".
		if atStopwords[local] || !strings.ContainsFunc(local, unicode.IsLetter) {
			return 0, false
		}
	}
	if (spelledAt || spelledDot) && !knownTLDs[strings.ToLower(last[2])] {
		return 0, false
	}
	return e, true
}

func checkIBAN(t string, s, e int) (int, bool) {
	if s > 0 && isAlnum(t[s-1]) {
		return 0, false
	}
	for end := e; end > s+4; end-- {
		if !isAlnum(t[end-1]) || end < len(t) && isAlnum(t[end]) {
			continue
		}
		if validIBAN(strings.NewReplacer(" ", "", "\t", "", "-", "", ".", "").Replace(t[s:end])) {
			return end, true
		}
	}
	return 0, false
}

var cardStopwords = []string{"isbn", "tracking", "track #", "awb"}

func checkCard(t string, s, e int) (int, bool) {
	if digitBefore(t, s) || t[s] < '2' || t[s] > '6' || contextBefore(t, s, 24, cardStopwords) {
		return 0, false
	}
	for end := e; end > s; end-- {
		if !isDigit(t[end-1]) {
			continue
		}
		n, alnum := digitsAfter(t, end)
		// A card may be followed by its expiry or CVV ("... 1111 12/26"),
		// not by more of one long number.
		if alnum || n > 4 || n > 0 && t[end] != ' ' {
			continue
		}
		if validCard(t[s:end]) {
			return end, true
		}
	}
	return 0, false
}

var ssnContext = []string{"ssn", "social security", "soc sec", "ss#", "ss no", "ss num", "social sec"}

// continues reports whether the number [s, e) is part of a longer one: a
// letter or digit touching it, or a digit behind a separator, where a
// plain space counts only if the number itself is spaced out.
func continues(t string, s, e int) bool {
	spaced := strings.ContainsAny(t[s:e], " \t")
	sepOK := func(c byte) bool { return isNumSep(c) && (spaced || c != ' ' && c != '\t') }
	if continuesLeft(t, s, spaced) || e < len(t) && isAlnum(t[e]) {
		return true
	}
	for i := e; i < len(t) && i < e+5 && sepOK(t[i]); i++ {
		if i+1 < len(t) && isDigit(t[i+1]) {
			return true
		}
	}
	return false
}

// continuesLeft is the left half of continues.
func continuesLeft(t string, s int, spaced bool) bool {
	if s > 0 && isAlnum(t[s-1]) {
		return true
	}
	for i := s - 1; i >= 0 && i >= s-5 && isNumSep(t[i]) && (spaced || t[i] != ' ' && t[i] != '\t'); i-- {
		if i > 0 && isDigit(t[i-1]) {
			return true
		}
	}
	return false
}

// digitsNearby reports digits only whitespace away on either side of
// [s, e): for phones, the same number written with wider gaps
// ("00 0000 0000  0000.0000.00") or a run of numbers, not a phone.
func digitsNearby(t string, s, e int) bool {
	i := s - 1
	for i >= 0 && i >= s-3 && (t[i] == ' ' || t[i] == '\t') {
		i--
	}
	if i < s-1 && i >= 0 && isDigit(t[i]) {
		return true
	}
	j := e
	for j < len(t) && j < e+3 && (t[j] == ' ' || t[j] == '\t') {
		j++
	}
	return j > e && j < len(t) && isDigit(t[j])
}

func checkSSN(t string, s, e int) (int, bool) {
	if continues(t, s, e) {
		return 0, false
	}
	if !validSSN(t[s:e]) {
		return 0, false
	}
	if g := digitGroups(t[s:e]); len(g) == 3 && g[0] == 3 && g[1] == 2 && g[2] == 4 {
		return e, true
	}
	// Nine digits without the 3-2-4 shape are an SSN only when said so.
	return e, contextBefore(t, s, 40, ssnContext)
}

var ipDefang = strings.NewReplacer("[.]", ".", "(.)", ".", "[dot]", ".", "(dot)", ".", "[DOT]", ".", "(DOT)", ".")

func checkIP(t string, s, e int) (int, bool) {
	m := t[s:e]
	if strings.Contains(m, ":") {
		if s > 0 && (isAlnum(t[s-1]) || t[s-1] == ':') || e < len(t) && (isAlnum(t[e]) || t[e] == ':') {
			return 0, false
		}
		return e, validIP(m)
	}
	if s > 0 && (isAlnum(t[s-1]) || t[s-1] == '.' && s > 1 && isDigit(t[s-2])) {
		return 0, false
	}
	if e < len(t) && (isAlnum(t[e]) || t[e] == '.' && e+1 < len(t) && isDigit(t[e+1])) {
		return 0, false
	}
	return e, validIP(ipDefang.Replace(m))
}

var (
	phoneContext    = []string{"phone", "call", "tel", "mobile", "cell", "fax", "sms", "text me", "whatsapp", "contact", "reach", "ph.", "ph:", "dial"}
	phoneNotContext = []string{"order", "invoice", "inv", "tracking", "ref", "isbn", "id", "account", "acct", "ticket",
		"serial", "sku", "po", "case", "confirmation", "booking", "transaction", "txn", "#", "no.", "build", "version", "timestamp", "epoch"}
)

func checkPhone(t string, s, e int) (int, bool) {
	// The pattern may run over two numbers ("415.555.0100 / 415_555_0100"):
	// try each end of a digit group, longest first; a shorter one must be
	// unspaced and followed by a space, so a spaced-out number is not cut.
	for end := e; end > s; end-- {
		if !isDigit(t[end-1]) || end < e && (t[end] != ' ' && t[end] != '\t' || strings.ContainsAny(t[s:end], " \t") || !markedGap(t, end)) {
			continue
		}
		if end == e && (continues(t, s, e) || digitsNearby(t, s, e)) ||
			end < e && (continuesLeft(t, s, strings.ContainsAny(t[s:end], " \t")) || digitsNearby(t, s, s)) {
			return 0, false
		}
		if phoneAt(t, s, end) {
			return end, true
		}
	}
	return 0, false
}

// markedGap reports whether the separators from i to the next digit hold
// more than whitespace (" / "): a list of numbers, not one spaced number.
func markedGap(t string, i int) bool {
	for ; i < len(t) && !isDigit(t[i]); i++ {
		if t[i] != ' ' && t[i] != '\t' {
			return true
		}
	}
	return false
}

func phoneAt(t string, s, e int) bool {
	if s > 0 && t[s-1] == ':' || e < len(t) && t[e] == ':' { // a time, "2024-03-18 10:30"
		return false
	}
	m := t[s:e]
	if !validPhone(m) {
		return false
	}
	pos := contextBefore(t, s, 32, phoneContext)
	if !pos && contextBefore(t, s, 24, phoneNotContext) {
		return false
	}
	g := digitGroups(m)
	if !strings.ContainsAny(m, "+(") && len(g) >= 3 && isDate(m, g) {
		return false
	}
	if len(g) == 1 && m[0] != '+' && !pos {
		// A bare run of ten digits (timestamps, ids) is a phone only in
		// the North American shape: area code and exchange start 2-9.
		return m[0] >= '2' && m[3] >= '2'
	}
	return true
}

// isDate reports whether m starts like a date: 2024-03-18 or 18/03/2024.
func isDate(m string, g []int) bool {
	d := digits(m)
	num := func(s string) int {
		n := 0
		for i := 0; i < len(s); i++ {
			n = n*10 + int(s[i]-'0')
		}
		return n
	}
	if g[0] == 4 && g[1] <= 2 && g[2] <= 2 {
		y, mo, da := num(d[:4]), num(d[4:4+g[1]]), num(d[4+g[1]:4+g[1]+g[2]])
		return y >= 1900 && y <= 2100 && mo >= 1 && mo <= 12 && da >= 1 && da <= 31
	}
	if g[0] <= 2 && g[1] <= 2 && g[2] == 4 {
		y := num(d[g[0]+g[1] : g[0]+g[1]+4])
		return y >= 1900 && y <= 2100
	}
	return false
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

// RedactStable is Redact repeated on its own output (at most 4 rounds)
// until a new scan finds nothing more of types: a number that was refused
// because it touched a redacted one ("0000 000 0000(000)000 0000") stands
// alone once its neighbour is a label, and is redacted then.
func RedactStable(text string, findings []Finding, types map[string]bool) (string, map[string]int) {
	out, counts := Redact(text, findings, types)
	for range 4 {
		var more []Finding
		for _, f := range Scan(out) {
			if types[f.Type] {
				more = append(more, f)
			}
		}
		if len(more) == 0 {
			break
		}
		var c map[string]int
		out, c = Redact(out, more, types)
		for t, n := range c {
			counts[t] += n
		}
	}
	return out, counts
}
