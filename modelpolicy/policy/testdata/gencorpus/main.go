// Command gencorpus writes testdata/pii_corpus.jsonl: obfuscated positives
// for every recognizer type and benign look-alikes, built from real-world
// shapes (published test card numbers, example IBANs, documentation
// addresses) with a fixed seed, plus hand-written hard cases. The corpus is
// built from how people write these values, not from what the recognizers
// accept; cases a careful human could read either way are marked ambiguous
// and reported but not scored.
//
//	go run ./modelpolicy/policy/testdata/gencorpus > modelpolicy/policy/testdata/pii_corpus.jsonl
package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
)

type entry struct {
	Text      string   `json:"text"`
	Types     []string `json:"types"`
	Kind      string   `json:"kind"` // positive or benign
	Note      string   `json:"note"`
	Ambiguous bool     `json:"ambiguous,omitempty"`
}

var (
	out []entry
	rng = rand.New(rand.NewPCG(10, 2026))
)

func pos(typ, text, note string) {
	out = append(out, entry{Text: text, Types: []string{typ}, Kind: "positive", Note: note})
}

func benign(text, note string, types ...string) {
	if types == nil {
		types = []string{}
	}
	out = append(out, entry{Text: text, Types: types, Kind: "benign", Note: note})
}

func ambiguous(text, note string, types ...string) {
	if types == nil {
		types = []string{}
	}
	out = append(out, entry{Text: text, Types: types, Kind: "benign", Note: note, Ambiguous: true})
}

// Sentences the values are embedded in; none names the type.
var frames = []string{"%s", "Please use %s for this.", "details: %s", "Send it to %s, thanks!", "(%s)", "as discussed — %s — ok?", "\"%s\"", "value=%s;"}

func frame(v string) string { return fmt.Sprintf(frames[rng.IntN(len(frames))], v) }

const zwsp, zwj, shy, nbsp = "\u200b", "\u200d", "\u00ad", "\u00a0"

// fullwidth maps ASCII letters, digits and punctuation to their full-width forms.
func fullwidth(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r > ' ' && r < 0x7f {
			b.WriteRune(r - 0x21 + 0xff01)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// sprinkle inserts an invisible character at a few random inner positions.
func sprinkle(s, inv string) string {
	rs := []rune(s)
	var b strings.Builder
	for i, r := range rs {
		if i > 0 && rng.IntN(3) == 0 {
			b.WriteString(inv)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// group splits digits into groups of the given sizes joined by sep.
func group(d string, sizes []int, sep string) string {
	var parts []string
	for _, n := range sizes {
		if n > len(d) {
			n = len(d)
		}
		parts = append(parts, d[:n])
		d = d[n:]
	}
	if d != "" {
		parts = append(parts, d)
	}
	return strings.Join(parts, sep)
}

func luhnOK(d string) bool {
	sum, dbl := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if dbl {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		dbl = !dbl
	}
	return sum%10 == 0
}

func randDigits(n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(byte('0' + rng.IntN(10)))
	}
	return b.String()
}

func main() {
	// --- e-mail
	emails := [][2]string{{"jane.doe", "example.com"}, {"bob", "mail.example.org"}, {"a.smith42", "company.co.uk"}, {"support", "acme.io"}, {"first_last", "uni.edu"}, {"x.y-z", "example.net"}}
	for _, e := range emails {
		l, d := e[0], e[1]
		dd := strings.ReplaceAll(d, ".", " dot ")
		pos("email", frame(l+"@"+d), "plain")
		pos("email", frame(sprinkle(l+"@"+d, zwsp)), "zero-width spaces inside")
		pos("email", frame(l+zwj+"@"+zwsp+d), "zero-width joiner and space around @")
		pos("email", frame(l+"＠"+d), "full-width @")
		pos("email", frame(fullwidth(l+"@"+d)), "all full-width")
		pos("email", frame(l+" (at) "+d), "(at)")
		pos("email", frame(l+"[at]"+d), "[at]")
		pos("email", frame(l+" at "+dd), "at and dot spelled")
		pos("email", frame(l+" [at] "+strings.ReplaceAll(d, ".", " [dot] ")), "[at] [dot]")
		pos("email", frame(l+" AT "+strings.ReplaceAll(d, ".", " DOT ")), "AT DOT upper case")
		pos("email", frame(l+" @ "+d), "spaces around @")
		pos("email", frame(l+"{at}"+d), "{at}")
		pos("email", frame(sprinkle(l, shy)+"@"+d), "soft hyphens in local part")
	}
	pos("email", "write to jane dot doe at example dot com please", "local part dot spelled")
	pos("email", "mail me: john(at)example(dot)org", "(at)(dot) without spaces")

	// --- credit cards (published test numbers)
	cards := []struct {
		d     string
		sizes []int
	}{{"4111111111111111", []int{4, 4, 4, 4}}, {"5500000000000004", []int{4, 4, 4, 4}}, {"340000000000009", []int{4, 6, 5}},
		{"6011000000000004", []int{4, 4, 4, 4}}, {"5555555555554444", []int{4, 4, 4, 4}}, {"4012888888881881", []int{4, 4, 4, 4}},
		{"378282246310005", []int{4, 6, 5}}, {"3530111333300000", []int{4, 4, 4, 4}}}
	cardSeps := []struct{ sep, note string }{{" ", "spaces"}, {"-", "dashes"}, {".", "dots"}, {"_", "underscores"}, {"/", "slashes"}, {"  ", "double spaces"}, {nbsp, "no-break spaces"}, {"\u2013", "en dashes"}, {" - ", "spaced dashes"}}
	for i, c := range cards {
		for j, s := range cardSeps {
			if (i+j)%2 == 0 {
				pos("credit_card", frame(group(c.d, c.sizes, s.sep)), "card, "+s.note)
			}
		}
		pos("credit_card", frame(fullwidth(group(c.d, c.sizes, " "))), "card, full-width digits")
		pos("credit_card", frame(sprinkle(c.d, zwsp)), "card, zero-width spaces")
		pos("credit_card", frame(group(c.d, c.sizes, zwsp)), "card, groups joined by zero-width spaces")
		pos("credit_card", frame(strings.Join(strings.Split(c.d, ""), " ")), "card, every digit spaced")
	}
	pos("credit_card", "card 4111 1111 1111 1111 exp 12/26 cvv 123", "card followed by expiry and cvv")
	pos("credit_card", "4111 1111 1111 1111 123", "card followed by cvv digits")

	// --- SSNs
	ssns := []string{"123456789", "078051120", "219099999", "457555462", "536221234", "301427890"}
	ssnSeps := []string{"-", " ", ".", "_", "/", " - ", "\u2013"}
	for i, s := range ssns {
		for j, sep := range ssnSeps {
			if (i+j)%2 == 0 {
				pos("ssn", frame(group(s, []int{3, 2}, sep)), "ssn, separator "+fmt.Sprintf("%q", sep))
			}
		}
		pos("ssn", frame(fullwidth(group(s, []int{3, 2}, "-"))), "ssn, full-width")
		pos("ssn", frame(sprinkle(group(s, []int{3, 2}, "-"), zwsp)), "ssn, zero-width spaces")
	}
	for i, ctx := range []string{"SSN %s", "ssn: %s", "my social security number is %s", "SS# %s", "Social Security No. %s", "SSN:%s", "ssn (%s)", "soc sec %s"} {
		s := ssns[i%len(ssns)]
		pos("ssn", fmt.Sprintf(ctx, s), "bare nine digits after a context word")
		pos("ssn", fmt.Sprintf(ctx, fullwidth(s)), "bare full-width nine digits after a context word")
	}
	pos("ssn", "SSN 1 2 3 4 5 6 7 8 9", "SSN spaced digit by digit")

	// --- phones
	phones := []struct{ d, pfx string }{{"4155550100", "+1"}, {"2125550199", "+1"}, {"6175550123", "+1"}, {"2079460958", "+44"}, {"3025550147", "+1"}}
	for i, p := range phones {
		d := p.d
		forms := []string{
			"(" + d[:3] + ") " + d[3:6] + "-" + d[6:],
			d[:3] + "." + d[3:6] + "." + d[6:],
			d[:3] + "/" + d[3:6] + "/" + d[6:],
			d[:3] + "_" + d[3:6] + "_" + d[6:],
			d[:3] + " " + d[3:6] + " " + d[6:],
			p.pfx + " " + d[:3] + " " + d[3:6] + " " + d[6:],
			p.pfx + "." + d[:3] + "." + d[3:6] + "." + d[6:],
			p.pfx + d,
			fullwidth(d[:3] + "-" + d[3:6] + "-" + d[6:]),
			sprinkle(d[:3]+"-"+d[3:6]+"-"+d[6:], zwsp),
			d[:3] + "\u2013" + d[3:6] + "\u2013" + d[6:],
			p.pfx + nbsp + d[:3] + nbsp + d[3:6] + nbsp + d[6:],
		}
		for j, f := range forms {
			if (i+j)%4 != 3 {
				pos("phone", frame(f), "phone form "+fmt.Sprint(j))
			}
		}
	}
	pos("phone", "call +44 20 7946 0958", "UK number")
	pos("phone", "call me on 4155550100", "bare ten digits")

	// --- IBANs (documented examples)
	ibans := []string{"DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "NL91ABNA0417164300", "ES9121000418450200051332"}
	for _, ib := range ibans {
		pos("iban", frame(ib), "iban compact")
		pos("iban", frame(group(ib, []int{4, 4, 4, 4, 4, 4, 4}, " ")), "iban in groups of four")
		pos("iban", frame(group(ib, []int{4, 4, 4, 4, 4, 4, 4}, "-")), "iban dashed")
		pos("iban", frame(fullwidth(ib)), "iban full-width")
		pos("iban", frame(sprinkle(ib, zwsp)), "iban zero-width spaces")
	}

	// --- secrets (documented example keys)
	aws := "AKIAIOSFODNN7EXAMPLE"
	pos("secret", frame(aws), "aws key")
	pos("secret", frame(group(aws, []int{4, 4, 4, 4}, " ")), "aws key in groups with spaces")
	pos("secret", frame(group(aws, []int{4, 4, 4, 4}, "-")), "aws key dashed")
	pos("secret", frame(sprinkle(aws, zwsp)), "aws key zero-width spaces")
	pos("secret", frame(fullwidth(aws)), "aws key full-width")
	pos("secret", frame(strings.Join(strings.Split(aws, ""), " ")), "aws key every character spaced")
	pos("secret", frame("AKIA "+aws[4:]), "aws key with a space after AKIA")
	sk := "sk-proj-abcdefghijklmnopqrstuvwxyz012345"
	ghp := "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	for _, k := range []string{sk, ghp, jwt, "xoxb-123456789012-abcdefghijkl", "glpat-abcdefghij0123456789", "AIzaSyA1234567890abcdefghijklmnopqrstuv"} {
		pos("secret", frame(k), "secret plain")
		pos("secret", frame(sprinkle(k, zwsp)), "secret zero-width spaces")
		pos("secret", frame(fullwidth(k)), "secret full-width")
	}

	// --- IP addresses
	for _, ip := range []string{"192.168.1.20", "10.0.0.1", "203.0.113.7", "172.16.254.3"} {
		pos("ip_address", frame(ip), "ipv4")
		pos("ip_address", frame(strings.ReplaceAll(ip, ".", "[.]")), "ipv4 defanged [.]")
		pos("ip_address", frame(fullwidth(ip)), "ipv4 full-width")
		pos("ip_address", frame(sprinkle(ip, zwsp)), "ipv4 zero-width spaces")
	}
	pos("ip_address", "addr 2001:db8::8a2e:370:7334 ok", "ipv6")

	// ===== benign look-alikes
	for range 25 {
		benign(fmt.Sprintf("Order #%s shipped", randDigits(6+rng.IntN(7))), "order number")
	}
	for range 10 {
		benign(fmt.Sprintf("order %s", randDigits(10)), "ten-digit order number")
	}
	for range 20 {
		y, m, d := 1990+rng.IntN(40), 1+rng.IntN(12), 1+rng.IntN(28)
		h, mi := rng.IntN(24), rng.IntN(60)
		switch rng.IntN(4) {
		case 0:
			benign(fmt.Sprintf("on %04d-%02d-%02d %02d:%02d", y, m, d, h, mi), "date and time")
		case 1:
			benign(fmt.Sprintf("due %02d/%02d/%04d", d, m, y), "date d/m/y")
		case 2:
			benign(fmt.Sprintf("%04d.%02d.%02d %02d:%02d:%02d", y, m, d, h, mi, rng.IntN(60)), "dotted date time")
		default:
			benign(fmt.Sprintf("from %04d-%02d-%02d to %04d-%02d-%02d", y, m, d, y, m, d+1), "date range")
		}
	}
	for range 15 {
		benign(fmt.Sprintf("meeting at %d:%02d, then %02d:%02d:%02d", 1+rng.IntN(12), rng.IntN(60), rng.IntN(24), rng.IntN(60), rng.IntN(60)), "times")
	}
	for range 20 {
		switch rng.IntN(3) {
		case 0:
			benign(fmt.Sprintf("upgrade to v%d.%d.%d", rng.IntN(30), rng.IntN(100), rng.IntN(1000)), "semver")
		case 1:
			benign(fmt.Sprintf("go%d.%d.%d and node %d.%d.%d", 1, rng.IntN(30), rng.IntN(20), 10+rng.IntN(15), rng.IntN(20), rng.IntN(10)), "toolchain versions")
		default:
			benign(fmt.Sprintf("build 10.0.%d.%d", 10000+rng.IntN(90000), rng.IntN(3000)), "windows build number")
		}
	}
	for range 15 {
		benign(fmt.Sprintf("server %d.%d.%d.%d is down", 1+rng.IntN(223), rng.IntN(256), rng.IntN(256), 1+rng.IntN(254)), "ipv4 (not a phone)", "ip_address")
	}
	for range 20 {
		switch rng.IntN(4) {
		case 0:
			benign("tracking 1Z"+randDigits(3)+"AA1"+randDigits(10), "UPS tracking number")
		case 1:
			benign("tracking number "+group(randDigits(12), []int{4, 4, 4}, " "), "FedEx tracking")
		case 2:
			benign("USPS "+group("9400"+randDigits(18), []int{4, 4, 4, 4, 4}, " "), "USPS tracking (22 digits)")
		default:
			benign("parcel "+"9261"+randDigits(18), "USPS tracking compact")
		}
	}
	for range 20 {
		switch rng.IntN(3) {
		case 0:
			benign(fmt.Sprintf("invoice INV-%d-%06d", 2015+rng.IntN(12), rng.IntN(1000000)), "invoice id")
		case 1:
			benign(fmt.Sprintf("ref INV/%d/%05d", 2015+rng.IntN(12), rng.IntN(100000)), "invoice id slashes")
		default:
			benign(fmt.Sprintf("PO-%s-%s", randDigits(4), randDigits(6)), "purchase order")
		}
	}
	for range 20 {
		switch rng.IntN(4) {
		case 0:
			benign(fmt.Sprintf("total $%d,%03d.%02d", rng.IntN(1000), rng.IntN(1000), rng.IntN(100)), "price")
		case 1:
			benign(fmt.Sprintf("€ %d.%03d,%02d incl. VAT", rng.IntN(1000), rng.IntN(1000), rng.IntN(100)), "euro price")
		case 2:
			benign(fmt.Sprintf("revenue USD %d,%03d,%03d,%03d.%02d", 1+rng.IntN(99), rng.IntN(1000), rng.IntN(1000), rng.IntN(1000), rng.IntN(100)), "large amount")
		default:
			benign(fmt.Sprintf("population %d %03d %03d", 1+rng.IntN(999), rng.IntN(1000), rng.IntN(1000)), "number with thin spacing")
		}
	}
	for range 20 {
		d := "978" + randDigits(9)
		sum := 0
		for i := range 12 {
			w := 1
			if i%2 == 1 {
				w = 3
			}
			sum += int(d[i]-'0') * w
		}
		d += fmt.Sprint((10 - sum%10) % 10)
		if rng.IntN(2) == 0 {
			benign("ISBN "+d[:3]+"-"+d[3:4]+"-"+d[4:6]+"-"+d[6:12]+"-"+d[12:], "ISBN-13 hyphenated")
		} else {
			benign("ISBN "+d, "ISBN-13 compact")
		}
	}
	for range 10 {
		benign(fmt.Sprintf("created_at=%d", 1500000000+rng.IntN(300000000)), "unix timestamp")
	}
	for range 10 {
		// Luhn-failing 16-digit numbers
		d := "4" + randDigits(15)
		for luhnOK(d) {
			d = "4" + randDigits(15)
		}
		benign(group(d, []int{4, 4, 4, 4}, " "), "16 digits failing Luhn")
	}
	for _, s := range []string{"000-12-3456", "666-45-6789", "900-12-3456", "123-00-4567", "123-45-0000"} {
		benign("id "+s, "invalid SSN (area 000/666/9xx, group 00, serial 0000)")
	}
	for range 10 {
		benign("routing number "+randDigits(9), "nine digits without SSN context")
	}
	for range 10 {
		benign(fmt.Sprintf("zip %05d-%04d", rng.IntN(100000), rng.IntN(10000)), "ZIP+4")
	}
	for range 8 {
		benign(fmt.Sprintf("at %d.%04d, -%d.%04d", 10+rng.IntN(80), rng.IntN(10000), 10+rng.IntN(170), rng.IntN(10000)), "coordinates")
	}
	for _, s := range []string{
		"let's meet at 5", "meet at 5 pm at the office", "we met at noon dot the end", "the dot com bubble burst in 2000",
		"look at example dot com for details", "it is available at shop dot example dot com", "arrive at the station at 10:45",
		"prices start at 99 dot 99", "see you at home", "stay at the hotel near 5th ave", "visit us at acme.com",
		"the file is at docs/guide.md", "user@localhost", "follow @openai on X", "email foo@bar please (no domain)",
		"score 3-2 after 90 minutes", "pages 123-456 of 789", "call at 5 or text later", "a.b@c", "version 1.2.3 at build 4567",
		"git commit 9a69287bc61864", "uuid 123e4567-e89b-12d3-a456-426614174000", "sha256 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
		"pi is 3.14159265358979", "the year 2024 had 366 days", "room 301, floor 12, building 7", "at least 2,000 people",
		"the meeting is at 3 dot", "AKIA is a prefix", "sk- is how keys begin", "order 12 at 5 dot com", "file_2024_03_18_v2.txt",
		"temperature 98.6/100", "tel. extension 1234", "spell it A K I A, then the rest", "A-K-I-A was the team name in 2019", "ratio 16:9 at 1920x1080", "released 2024/03/18 09:15",
		"IP ranges 10.0.0.0/8 and 192.168.0.0/16", "localhost:8080 and 127.0.0.1:5432",
	} {
		switch {
		case strings.Contains(s, "acme.com") || strings.Contains(s, "0.0/") || strings.Contains(s, "127.0.0.1"):
			if strings.Contains(s, "acme.com") {
				benign(s, "hand-written: a domain, not an address")
			} else {
				benign(s, "hand-written: IPs, not phones", "ip_address")
			}
		default:
			benign(s, "hand-written look-alike")
		}
	}
	ambiguous("order 12 at example dot com", "could be an address for user '12'")
	ambiguous("bob at home dot com", "prose or a spelled-out address")
	ambiguous("version 1.2.3.4", "four-part version that is also a valid IPv4 address", "ip_address")
	ambiguous("Order ID 4111111111111111", "order id that is a valid test card number", "credit_card")

	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	for _, e := range out {
		if err := enc.Encode(e); err != nil {
			panic(err)
		}
	}
}
