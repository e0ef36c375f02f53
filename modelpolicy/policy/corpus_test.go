package policy

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// corpusEntry is one line of testdata/pii_corpus.jsonl (written by
// testdata/gencorpus): a text, the types it contains, positive or benign,
// and whether a careful human could read it either way (ambiguous cases
// are reported, not scored).
type corpusEntry struct {
	Text      string   `json:"text"`
	Types     []string `json:"types"`
	Kind      string   `json:"kind"`
	Note      string   `json:"note"`
	Ambiguous bool     `json:"ambiguous"`
}

func loadCorpus(t testing.TB) []corpusEntry {
	f, err := os.Open("testdata/pii_corpus.jsonl")
	require.NoError(t, err)
	defer f.Close()
	var out []corpusEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e corpusEntry
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "line %d", len(out)+1)
		require.Contains(t, []string{"positive", "benign"}, e.Kind, "line %d", len(out)+1)
		out = append(out, e)
	}
	require.NoError(t, sc.Err())
	return out
}

// TestCorpusRecallAndFalsePositives scores the recognizers on the labelled
// corpus: recall per expected type (found, and gone after redaction) and
// the false-positive rate on benign look-alikes (any type found that the
// entry does not contain). Goals: recall >= 95%, false positives <= 2%.
func TestCorpusRecallAndFalsePositives(t *testing.T) {
	t.Parallel()
	corpus := loadCorpus(t)
	all := map[string]bool{}
	for _, typ := range Types {
		all[typ] = true
	}
	type tally struct{ n, hit int }
	recall := map[string]*tally{}
	fp := map[string]int{} // benign entries with an unexpected finding, by type
	var positives, benign, benignFP, ambiguous int
	for _, typ := range Types {
		recall[typ] = &tally{}
	}
	for i, e := range corpus {
		found := Scan(e.Text)
		got := map[string]bool{}
		for _, f := range found {
			got[f.Type] = true
		}
		if e.Ambiguous {
			ambiguous++
			t.Logf("ambiguous %q (%s): found %v, labelled %v", e.Text, e.Note, types(found), e.Types)
			continue
		}
		redacted, _ := Redact(e.Text, found, all)
		after := map[string]bool{}
		for _, f := range Scan(redacted) {
			after[f.Type] = true
		}
		if e.Kind == "positive" {
			positives++
		}
		for _, typ := range e.Types {
			r := recall[typ]
			r.n++
			if got[typ] && !after[typ] {
				r.hit++
			} else if e.Kind == "positive" {
				t.Logf("missed %s in line %d %q (%s): found %v, after redaction %q", typ, i+1, e.Text, e.Note, types(found), redacted)
			}
		}
		if e.Kind == "benign" {
			benign++
			bad := false
			for typ := range got {
				if !slices.Contains(e.Types, typ) {
					fp[typ]++
					bad = true
				}
			}
			if bad {
				benignFP++
				t.Logf("false positive in line %d %q (%s): found %v", i+1, e.Text, e.Note, types(found))
			}
		}
	}
	require.GreaterOrEqual(t, positives, 200, "corpus needs at least 200 obfuscated positives")
	require.GreaterOrEqual(t, benign, 200, "corpus needs at least 200 benign look-alikes")
	var n, hit int
	for _, typ := range Types {
		r := recall[typ]
		require.Positive(t, r.n, "no positives of type %s", typ)
		n += r.n
		hit += r.hit
		t.Logf("%-12s recall %6.2f%% (%d/%d)   false positives on benign %d", typ, 100*float64(r.hit)/float64(r.n), r.hit, r.n, fp[typ])
	}
	rec := float64(hit) / float64(n)
	fpr := float64(benignFP) / float64(benign)
	t.Logf("overall      recall %6.2f%% (%d/%d)   false-positive rate %.2f%% (%d/%d benign)   ambiguous %d (not scored)",
		100*rec, hit, n, 100*fpr, benignFP, benign, ambiguous)
	require.GreaterOrEqual(t, rec, 0.95, "recall below goal")
	require.LessOrEqual(t, fpr, 0.02, "false-positive rate above goal")
}
