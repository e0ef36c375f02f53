package modelpolicy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/modelpolicy/policy"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

var filler = strings.Repeat("The quick brown fox jumps over the lazy dog. ", 8)

// Whatever the fragment sizes, what the guard sends is a prefix of the
// whole text's redaction (so no PII value split across fragments leaks),
// and most of a long text is sent before its end.
func TestStreamGuardSplitValues(t *testing.T) {
	t.Parallel()
	p := policy.DefaultPolicies()["pol_default"]
	for name, text := range map[string]string{
		"card":    filler + "my card is 4111 1111 1111 1111 thanks. " + filler,
		"phone":   filler + "call +1 (415) 555-0100 today " + filler,
		"email":   filler + "write to jane.doe@example.com or " + filler,
		"spelled": filler + "write to jane dot doe at example dot com please " + filler,
		"ssn":     filler + "SSN: 123-45-6789 on file " + filler,
		"iban":    filler + "IBAN DE89 3704 0044 0532 0130 00 is mine " + filler,
		"secret":  filler + "key sk-proj-abcdefghijklmnopqrstuvwxyz0123 here " + filler,
		"end":     filler + "card 4111 1111 1111 1111",
	} {
		final := p.ApplyText(policy.StageOutput, text, policy.NewOutcome())
		require.NotEqual(t, text, final, name)
		for _, size := range []int{1, 2, 3, 5, 7, 16} {
			var sent strings.Builder
			g := newStreamGuard(p, func(d providers.Delta) error { sent.WriteString(d.Content); return nil })
			for i := 0; i < len(text); i += size {
				require.NoError(t, g.add(text[i:min(len(text), i+size)]))
			}
			require.True(t, strings.HasPrefix(final, sent.String()), "%s/%d: sent %q is not a prefix of %q", name, size, sent.String(), final)
			require.Greater(t, sent.Len(), len(text)-3*streamHoldback, "%s/%d: little was sent before the end", name, size)
		}
	}
}

// Text without whitespace is held, unscanned, until whitespace or the
// end; then it goes out as everything else.
func TestStreamGuardNoWhitespace(t *testing.T) {
	t.Parallel()
	p := policy.DefaultPolicies()["pol_default"]
	blob := strings.Repeat("QUJDREVGR0hJSktM", 4096) // 64 KB of base64
	text := blob + " and then some words after it " + filler
	var sent strings.Builder
	g := newStreamGuard(p, func(d providers.Delta) error { sent.WriteString(d.Content); return nil })
	for i := 0; i < len(text); i += 4 {
		require.NoError(t, g.add(text[i:min(len(text), i+4)]))
		if i+4 < len(blob) {
			require.Zero(t, sent.Len(), "nothing before the first whitespace")
		}
	}
	final := p.ApplyText(policy.StageOutput, text, policy.NewOutcome())
	require.True(t, strings.HasPrefix(final, sent.String()))
	require.Greater(t, sent.Len(), len(blob))
}

// A blocked type stops the stream before the segment that holds it.
func TestStreamGuardBlocked(t *testing.T) {
	t.Parallel()
	p := policy.DefaultPolicies()["pol_strict"]
	text := filler + "my card is 4111 1111 1111 1111 thanks. " + filler + filler
	var sent strings.Builder
	g := newStreamGuard(p, func(d providers.Delta) error { sent.WriteString(d.Content); return nil })
	for i := 0; i < len(text); i += 3 {
		require.NoError(t, g.add(text[i:min(len(text), i+3)]))
	}
	require.True(t, g.blocked)
	require.NotContains(t, sent.String(), "4111")
	require.True(t, strings.HasPrefix(text, sent.String()))
}

// streamingOpenAI is an OpenAI-compatible backend that streams text in
// fragments of three bytes (whole answers without stream).
func streamingOpenAI(t *testing.T, text string) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Stream bool `json:"stream"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		usage := `{"prompt_tokens":11,"completion_tokens":42,"total_tokens":53}`
		if !body.Stream {
			w.Header().Set("Content-Type", "application/json")
			b, _ := json.Marshal(text)
			_, _ = fmt.Fprintf(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%s},"finish_reason":"stop"}],"usage":%s}`, b, usage)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < len(text); i += 3 {
			b, _ := json.Marshal(text[i:min(len(text), i+3)])
			_, _ = fmt.Fprintf(w, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%s}}]}\n\n", b)
		}
		_, _ = fmt.Fprintf(w, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":%s}\n\ndata: [DONE]\n\n", usage)
	}))
	t.Cleanup(ts.Close)
	return ts
}

type sseEvent struct {
	event string
	data  map[string]any
}

func postStream(t *testing.T, b *bundle, path string, body any) (*http.Response, []sseEvent) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", b.url+path, strings.NewReader(string(raw)))
	req.Header.Set("X-Test-Tenant", "tnt_a")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out []sseEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	ev := sseEvent{}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev.event = strings.TrimPrefix(line, "event: ")
		case line == "data: [DONE]":
			out = append(out, sseEvent{event: "[DONE]"})
		case strings.HasPrefix(line, "data: "):
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data), line)
			out = append(out, ev)
			ev = sseEvent{}
		}
	}
	require.NoError(t, sc.Err())
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp, out
}

// The canonical invoke streams under the same governance as its JSON
// answer: the deltas never hold a PII value split across the backend's
// fragments, they add up to the redacted answer, and usage, policy
// outcome and audit match the unstreamed call; the OpenAI-compatible
// endpoint streams the same text.
func TestInvokeStreamGoverned(t *testing.T) {
	t.Parallel()
	text := filler + "my card is 4111 1111 1111 1111 thanks. " + filler
	up := streamingOpenAI(t, text)
	cat, err := ParseCatalogue(fmt.Appendf(nil, "backends:\n  - {name: up, type: openai, base_url: %q}\nmodels:\n  - {name: m, backend: up, tiers: [fast]}\n", up.URL+"/v1"))
	require.NoError(t, err)
	b := setup(t, setupOpts{cat: cat})
	b.addTenant(tenant("tnt_a"))

	plain := b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user("hi")}, nil))
	require.Equal(t, 200, plain.status, string(plain.raw))
	want := dig(plain.body, "response", "output", "message", "content").(string)
	require.Contains(t, want, "[REDACTED:credit_card]")

	body := chatBody("tnt_a", "tier:fast", []map[string]any{user("hi")}, nil)
	body["request"].(map[string]any)["stream"] = true
	resp, evs := postStream(t, b, "/v1/models:invoke", body)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	require.GreaterOrEqual(t, len(evs), 3, "deltas then the response")
	var got strings.Builder
	for i, ev := range evs[:len(evs)-1] {
		require.Equal(t, "delta", ev.event, i)
		c := dig(ev.data, "delta", "content").(string)
		require.NotContains(t, c, "4111", "a delta leaked the card number")
		got.WriteString(c)
	}
	last := evs[len(evs)-1]
	require.Equal(t, "response", last.event)
	require.Equal(t, want, got.String())
	require.Equal(t, want, dig(last.data, "response", "output", "message", "content"))
	for _, k := range []string{"usage", "policy_outcome", "route"} {
		require.Equal(t, dig(plain.body, "response", k), dig(last.data, "response", k), k)
	}
	require.NotEmpty(t, last.data["correlation_id"])

	// The OpenAI-compatible stream: the same text, usage and outcome.
	_, chunks := postStream(t, b, "/v1/chat/completions", map[string]any{"model": "tier:fast", "stream": true,
		"messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	got.Reset()
	var final map[string]any
	for _, c := range chunks {
		if s, ok := dig(c.data, "choices", 0, "delta", "content").(string); ok {
			require.NotContains(t, s, "4111")
			got.WriteString(s)
		}
		if c.data["usage"] != nil {
			final = c.data
		}
	}
	require.Equal(t, want, got.String())
	require.Equal(t, "[DONE]", chunks[len(chunks)-1].event)
	require.EqualValues(t, 53, dig(final, "usage", "total_tokens"))
	require.Equal(t, dig(plain.body, "response", "policy_outcome"), dig(final, "agentos", "policy_outcome"))

	// Each call is audited once, with the same outcome and usage.
	b.flush()
	recs, err := b.db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	var outcomes []string
	for _, r := range recs {
		if strings.HasPrefix(r.Action, "model.") {
			outcomes = append(outcomes, r.Action+":"+r.Outcome)
			require.Equal(t, "53", fmt.Sprint(dig(r.Details, "usage", "total_tokens")), r.Action)
		}
	}
	require.ElementsMatch(t, []string{"model.invoke:redacted", "model.invoke:redacted", "model.chat_completions:redacted"}, outcomes)

	// stream is for chat only.
	eb := map[string]any{"auth": map[string]any{"tenant_id": "tnt_a"}, "request": map[string]any{"operation": "embed", "stream": true,
		"input": map[string]any{"texts": []string{"x"}}}}
	r := b.do("POST", "/v1/models:invoke", "tnt_a", eb)
	require.Equal(t, 400, r.status)
	require.Equal(t, "request.stream", dig(r.body, "error", "details", "field"))
}

// BenchmarkStreamGuard4KB streams a 4 KB answer (with a card number and
// an address in it) through the guard in 4-byte fragments, as a backend
// sends tokens; BenchmarkOutputPolicy4KB is what the unstreamed call
// spends on the same text (one whole-text pass). The streamed call pays
// both: the guard, then the output policy on the whole text.
func BenchmarkStreamGuard4KB(b *testing.B) {
	p := policy.DefaultPolicies()["pol_default"]
	text := benchAnswer()
	for b.Loop() {
		g := newStreamGuard(p, func(providers.Delta) error { return nil })
		for i := 0; i < len(text); i += 4 {
			_ = g.add(text[i:min(len(text), i+4)])
		}
	}
	b.SetBytes(int64(len(text)))
}

func BenchmarkOutputPolicy4KB(b *testing.B) {
	p := policy.DefaultPolicies()["pol_default"]
	text := benchAnswer()
	for b.Loop() {
		_ = p.ApplyText(policy.StageOutput, text, policy.NewOutcome())
	}
	b.SetBytes(int64(len(text)))
}

func benchAnswer() string {
	var sb strings.Builder
	for sb.Len() < 4096 {
		sb.WriteString(filler)
		sb.WriteString("card 4111 1111 1111 1111, mail jane.doe@example.com. ")
	}
	return sb.String()[:4096]
}
