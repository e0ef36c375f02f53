package modelpolicy

import (
	"bytes"
	"unicode/utf8"

	"github.com/nexixai/agentos/modelpolicy/policy"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

// Streamed output under a policy that redacts or blocks.
//
// A PII value can arrive split across the backend's fragments ("4111 1111"
// then " 1111 1111"), so fragments are never passed on as they come. The
// guard keeps what arrived and sends it in segments cut at safe
// boundaries: at whitespace, at least streamHoldback bytes before the end
// of what arrived (a value still growing at the end is never cut), and
// never inside a value the recognizers find when they scan the segment
// together with the text around it (scanContext bytes before it and
// everything after it that arrived). Each segment is redacted with those
// in-context findings, so a segment is redacted exactly as the whole text
// would be. A segment holding a type the policy blocks is not sent, and
// nothing after it either: the call then ends blocked by the output policy
// (which runs on the whole text, as without streaming).
// Text without whitespace (a long token, a blob) is held until whitespace
// or the end arrives.
//
// The bound: a recognized value longer than streamHoldback bytes (only
// spelled-out addresses and heavily obfuscated numbers get that long) of
// which only the beginning has arrived can be cut. The final message is
// always the output policy's redaction of the whole text; what was sent
// is a prefix of it in every other case, and the rest is sent after the
// output policy ran (see invoke).
const (
	streamHoldback = 128
	scanContext    = 64
)

type streamGuard struct {
	p    *policy.Policy
	send func(providers.Delta) error
	raw  []byte // everything that arrived
	done int    // raw[:done] was sent (redacted)
	// tried is len(raw) at the last cut attempt: attempts are at least
	// streamHoldback bytes apart, so the scans cost O(n) over a long
	// answer, not one scan per fragment.
	tried int
	// blocked: a segment held a blocked type; nothing more is sent.
	blocked bool
}

func newStreamGuard(p *policy.Policy, send func(providers.Delta) error) *streamGuard {
	return &streamGuard{p: p, send: send}
}

// add takes one fragment and sends what became safe.
func (g *streamGuard) add(s string) error {
	g.raw = append(g.raw, s...)
	if g.blocked || len(g.raw)-g.done < 2*streamHoldback || len(g.raw)-g.tried < streamHoldback {
		return nil
	}
	g.tried = len(g.raw)
	limit := len(g.raw) - streamHoldback
	// Without whitespace to cut at (a long token or blob), no scan: the
	// text waits for whitespace or the end.
	if !bytes.ContainsAny(g.raw[g.done:limit], " \n\t\r") {
		return nil
	}
	return g.cut(limit)
}

// cut sends raw[done:c] for the largest safe c <= limit, if any.
func (g *streamGuard) cut(limit int) error {
	ws := max(0, g.done-scanContext)
	for ws > 0 && !utf8.RuneStart(g.raw[ws]) {
		ws--
	}
	window := string(g.raw[ws:])
	findings := policy.Scan(window)
	inside := func(c int) bool {
		for _, f := range findings {
			if ws+f.Start < c && c < ws+f.End {
				return true
			}
		}
		return false
	}
	c := limit
	for ; c > g.done; c-- {
		if isSpaceByte(g.raw[c-1]) && !inside(c) {
			break
		}
	}
	if c <= g.done {
		return nil
	}
	seg := string(g.raw[g.done:c])
	// The segment's findings, in its own coordinates; a value that began
	// before the segment (only one longer than the holdback) is clipped,
	// so its remainder is still redacted.
	var fs []policy.Finding
	redact := map[string]bool{}
	for _, f := range findings {
		s, e := ws+f.Start, ws+f.End
		if e <= g.done || s >= c {
			continue
		}
		switch g.p.ActionFor(policy.StageOutput, f.Type) {
		case policy.ActionBlock:
			g.blocked = true
			return nil
		case policy.ActionRedact:
			redact[f.Type] = true
		}
		fs = append(fs, policy.Finding{Type: f.Type, Start: max(s, g.done) - g.done, End: e - g.done})
	}
	out := seg
	if len(redact) > 0 {
		out, _ = policy.RedactStable(seg, fs, redact)
	}
	g.done = c
	return g.send(providers.Delta{Content: out})
}

func isSpaceByte(b byte) bool { return b == ' ' || b == '\n' || b == '\t' || b == '\r' }
