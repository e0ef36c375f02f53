package policy

import (
	"testing"
	"unicode/utf8"
)

// FuzzRecognisers (run in CI for a short time, seeded from the labelled
// corpus) checks on any input: no panic; findings are ordered,
// non-overlapping ranges of the original text on rune boundaries; and once
// everything found is redacted (RedactStable, as the policy does), a new
// scan finds no type that was redacted.
func FuzzRecognisers(f *testing.F) {
	for _, e := range loadCorpus(f) {
		f.Add(e.Text)
	}
	all := map[string]bool{}
	for _, t := range Types {
		all[t] = true
	}
	f.Fuzz(func(t *testing.T, s string) {
		boundary := make([]bool, len(s)+1)
		for i := 0; i < len(s); {
			boundary[i] = true
			_, w := utf8.DecodeRuneInString(s[i:])
			i += w
		}
		boundary[len(s)] = true
		fs := Scan(s)
		last := 0
		for _, x := range fs {
			if x.Start < last || x.End <= x.Start || x.End > len(s) || !boundary[x.Start] || !boundary[x.End] {
				t.Fatalf("bad finding %+v in %q (%d bytes)", x, s, len(s))
			}
			last = x.End
		}
		out, _ := RedactStable(s, fs, all)
		for _, x := range Scan(out) {
			for _, y := range fs {
				if x.Type == y.Type {
					t.Fatalf("%s still found in redacted %q (from %q): %+v", x.Type, out, s, x)
				}
			}
		}
	})
}
