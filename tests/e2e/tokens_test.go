package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/modelpolicy"
	"github.com/nexixai/agentos/tests/testnode"
)

// gatedBackend is an OpenAI-compatible backend that streams words: the
// first half, then it waits until release is called, then the rest. While
// it waits, the model call it serves cannot have completed. Unstreamed
// calls get the whole answer at once.
type gatedBackend struct {
	*httptest.Server
	words   []string
	release func()
}

func startGatedBackend(t *testing.T, n int) *gatedBackend {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	b := &gatedBackend{release: func() { once.Do(func() { close(gate) }) }}
	for i := range n {
		b.words = append(b.words, fmt.Sprintf("word%03d ", i))
	}
	// A card number split across four fragments, before the gate: the
	// tenant's policy (pol_default) redacts it, so no delta may hold it.
	copy(b.words[9:], []string{"card ", "4111 ", "1111 ", "1111 ", "1111 ", "ok "})
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Stream bool `json:"stream"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		if !body.Stream {
			c, _ := json.Marshal(strings.Join(b.words, ""))
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"id":"g","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%s},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}`, c, len(b.words), 9+len(b.words))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i, word := range b.words {
			if i == len(b.words)/2 {
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
			c, _ := json.Marshal(word)
			_, _ = fmt.Fprintf(w, "data: {\"id\":\"g\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%s}}]}\n\n", c)
			_ = rc.Flush()
		}
		_, _ = fmt.Fprintf(w, "data: {\"id\":\"g\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\ndata: [DONE]\n\n", len(b.words), 9+len(b.words))
		_ = rc.Flush()
	}))
	t.Cleanup(func() { b.release(); b.Close() })
	return b
}

// startTokenNode starts a node whose model-policy catalogue adds the gated
// backend as model gated/talker, and an agent agt_e2e_talker using it.
func startTokenNode(t *testing.T, backend string, env ...string) (*testnode.Node, *apiclient.Client) {
	t.Helper()
	yaml := strings.Replace(modelpolicy.DefaultCatalogueYAML, "backends:\n  - name: builtin\n    type: builtin\n",
		fmt.Sprintf("backends:\n  - name: builtin\n    type: builtin\n  - name: gated\n    type: openai\n    base_url: %q\n", backend+"/v1"), 1)
	yaml = strings.Replace(yaml, "models:\n", "models:\n  - {name: talker, backend: gated, capabilities: [chat], tiers: [premium], max_output_tokens: 1024}\n", 1)
	path := filepath.Join(t.TempDir(), "model-policy.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	n := testnode.Start(t, testnode.Options{Env: append([]string{"AGENTOS_MODEL_POLICY_CONFIG=" + path}, env...)})
	admin := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: n.Credentials().PlatformAdmin.Token, TenantID: "tnt_demo"}
	_, err := admin.PutAgent(t.Context(), "agt_e2e_talker", map[string]any{"name": "Talker", "model_ref": "gated/talker",
		"instructions": "talk", "defaults": map[string]any{"timeout_ms": 120000}})
	require.NoError(t, err)
	return n, &apiclient.Client{BaseURL: n.URL("orchestrator"), TenantID: "tnt_demo"}
}

func deltaPayload(t *testing.T, e store.Event) (index int, text string) {
	t.Helper()
	var p struct {
		Index int    `json:"index"`
		Text  string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(e.Payload, &p))
	return p.Index, p.Text
}

// TestTokenStreamingEndToEnd: a run created with stream.tokens on a node
// of real processes gets agentos.model.delta events while the backend is
// still generating (it is held mid-answer until the test has seen a delta
// through SSE), all before the step's model.completed; the deltas add up
// to the run's output, with a card number split across the backend's
// fragments redacted before any delta; a reader that disconnects mid-deltas and resumes
// with Last-Event-ID gets exactly the events it missed; the typed client
// follows the whole stream.
func TestTokenStreamingEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel()
	backend := startGatedBackend(t, 120)
	n, c := startTokenNode(t, backend.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	run, err := c.CreateRun(ctx, "agt_e2e_talker", "talk to me", nil, apiclient.WithTokenStream())
	require.NoError(t, err)
	require.True(t, run.RunOptions.StreamTokens())

	// The typed client follows the whole run from the start.
	followed := make(chan []store.Event, 1)
	go func() {
		var evs []store.Event
		err := c.StreamEvents(ctx, run.RunID, 0, func(e store.Event) error { evs = append(evs, e); return nil })
		if err != nil {
			t.Errorf("follow: %v", err)
		}
		followed <- evs
	}()

	// A raw SSE reader reads until its first delta, while the backend
	// holds the model call, then goes away.
	req, err := http.NewRequestWithContext(ctx, "GET", n.URL("orchestrator")+"/v1/runs/"+run.RunID+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var seen []store.Event
	rd := events.NewReader(resp.Body)
	for {
		f, err := rd.Next()
		require.NoError(t, err, "the stream ended before any delta")
		if f.Comment {
			continue
		}
		e, err := events.DecodeFrame(f)
		require.NoError(t, err)
		require.NotEqual(t, store.EventModelCompleted, e.Type, "model.completed before any delta: %s", e.Payload)
		seen = append(seen, e)
		if e.Type == store.EventModelDelta {
			break
		}
	}
	resp.Body.Close()
	firstDelta := seen[len(seen)-1]
	// The model call is still in flight: the backend has not been
	// released, so it has not finished its answer.
	backend.release()

	// Resume after the delta: exactly the events the reader missed.
	var rest []store.Event
	require.NoError(t, c.StreamEvents(ctx, run.RunID, firstDelta.Sequence, func(e store.Event) error { rest = append(rest, e); return nil }))
	all := append(append([]store.Event{}, seen...), rest...)
	stored, err := c.ListEvents(ctx, run.RunID)
	require.NoError(t, err)
	require.Equal(t, eventIDs(stored), eventIDs(all), "resume with Last-Event-ID mid-deltas")
	for i, e := range all {
		require.EqualValues(t, i+1, e.Sequence)
	}

	// The whole run: deltas between model.requested and model.completed,
	// adding up to the output.
	final, err := c.GetRun(ctx, run.RunID)
	require.NoError(t, err)
	require.Equal(t, store.RunCompleted, final.Status)
	var text strings.Builder
	var deltas int
	completed := int64(0)
	for _, e := range all {
		switch e.Type {
		case store.EventModelDelta:
			require.Zero(t, completed, "a delta after model.completed")
			idx, s := deltaPayload(t, e)
			require.Equal(t, deltas, idx)
			deltas++
			text.WriteString(s)
		case store.EventModelCompleted:
			completed = e.Sequence
		}
	}
	require.Greater(t, deltas, 1)
	require.Less(t, firstDelta.Sequence, completed)
	want := strings.Replace(strings.Join(backend.words, ""), "4111 1111 1111 1111", "[REDACTED:credit_card]", 1)
	require.Equal(t, want, final.Output.Text)
	require.Equal(t, final.Output.Text, text.String())
	for _, e := range all {
		if e.Type == store.EventModelDelta {
			_, s := deltaPayload(t, e)
			require.NotContains(t, s, "4111", "a delta leaked the card number")
		}
	}

	select {
	case evs := <-followed:
		require.Equal(t, eventIDs(stored), eventIDs(evs))
	case <-ctx.Done():
		t.Fatal("the typed client did not reach the terminal event")
	}

	// Without stream.tokens: the same run, no deltas.
	plain, err := c.CreateRun(ctx, "agt_e2e_talker", "talk to me", nil)
	require.NoError(t, err)
	var types []string
	require.NoError(t, c.StreamEvents(ctx, plain.RunID, 0, func(e store.Event) error { types = append(types, e.Type); return nil }))
	require.NotContains(t, types, store.EventModelDelta)
	require.Equal(t, store.EventRunCompleted, types[len(types)-1])
}

// TestTokenStreamingSurvivesOrchestratorCrash: the typed client follows a
// streaming run across a kill -9 of the orchestrator in the middle of its
// deltas. It reconnects with Last-Event-ID until the restarted
// orchestrator answers, and sees every stored event once, in order; the
// resumed model call streams again from index 0, and its text is the
// run's output.
func TestTokenStreamingSurvivesOrchestratorCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel()
	backend := startGatedBackend(t, 120)
	n, c := startTokenNode(t, backend.URL, "AGENTOS_RUN_LEASE_TTL=2s")
	c.StreamRetries = 40 // the restart takes a few of them
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	run, err := c.CreateRun(ctx, "agt_e2e_talker", "talk to me", nil, apiclient.WithTokenStream())
	require.NoError(t, err)
	firstDelta := make(chan struct{})
	followed := make(chan []store.Event, 1)
	go func() {
		var evs []store.Event
		err := c.StreamEvents(ctx, run.RunID, 0, func(e store.Event) error {
			if e.Type == store.EventModelDelta && !slices.ContainsFunc(evs, func(o store.Event) bool { return o.Type == store.EventModelDelta }) {
				close(firstDelta)
			}
			evs = append(evs, e)
			return nil
		})
		if err != nil {
			t.Errorf("follow: %v", err)
		}
		followed <- evs
	}()
	select {
	case <-firstDelta:
	case <-ctx.Done():
		t.Fatal("no delta while the backend held the call")
	}
	n.Kill("orchestrator")
	n.StartService("orchestrator")
	backend.release()

	var evs []store.Event
	select {
	case evs = <-followed:
	case <-ctx.Done():
		t.Fatal("the typed client did not reach the terminal event")
	}
	stored, err := c.ListEvents(ctx, run.RunID)
	require.NoError(t, err)
	require.Equal(t, eventIDs(stored), eventIDs(evs))
	require.Equal(t, store.EventRunCompleted, evs[len(evs)-1].Type)
	var text strings.Builder
	restarts := 0
	for _, e := range evs {
		if e.Type == store.EventModelDelta {
			idx, s := deltaPayload(t, e)
			if idx == 0 {
				restarts++
				text.Reset()
			}
			text.WriteString(s)
		}
	}
	require.Equal(t, 2, restarts, "the resumed model call streams again from index 0")
	final, err := c.GetRun(ctx, run.RunID)
	require.NoError(t, err)
	require.Equal(t, final.Output.Text, text.String())
}

func eventIDs(evs []store.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}
