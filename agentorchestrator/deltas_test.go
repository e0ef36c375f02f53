package agentorchestrator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
)

// streamingModel streams scriptedModel's answers word by word. With gate
// set, a call streams its first word and then waits for gate to close,
// so a test can see deltas while the call is still in flight. failFirst
// makes the first streamed call fail (retryably) after its first word.
type streamingModel struct {
	*scriptedModel
	gate      chan struct{}
	failFirst atomic.Bool
	streamed  atomic.Int64
}

var _ modelport.Streamer = (*streamingModel)(nil)

func (m *streamingModel) ChatStream(ctx context.Context, ac auth.Context, req modelport.ChatRequest, onDelta func(modelport.Delta) error) (modelport.ChatResponse, error) {
	n := m.streamed.Add(1)
	resp, err := m.Chat(ctx, ac, req)
	if err != nil {
		return resp, err
	}
	words := strings.SplitAfter(resp.Output.Message.Content, " ")
	for i, w := range words {
		if err := onDelta(modelport.Delta{Content: w}); err != nil {
			return modelport.ChatResponse{}, err
		}
		if i == 0 && n == 1 && m.failFirst.Load() {
			return modelport.ChatResponse{}, errs.E(errs.DependencyUnavailable, "backend went away mid-stream")
		}
		if i == 0 && m.gate != nil {
			select {
			case <-m.gate:
			case <-ctx.Done():
				return modelport.ChatResponse{}, ctx.Err()
			}
		}
	}
	return resp, nil
}

func deltaText(t *testing.T, e store.Event) (int, string) {
	var p struct {
		StepID string `json:"step_id"`
		Index  int    `json:"index"`
		Text   string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(e.Payload, &p))
	require.Equal(t, *e.StepID, p.StepID)
	return p.Index, p.Text
}

// With stream.tokens, a model call's output arrives as delta events while
// the call is in flight, before its model.completed, and the deltas add up
// to the answer; without it there are none.
func TestTokenDeltas(t *testing.T) {
	t.Parallel()
	m := &streamingModel{scriptedModel: &scriptedModel{}, gate: make(chan struct{})}
	b := setup(t, bundleOpts{port: m})
	body := map[string]any{"input": "one two three four", "stream": map[string]any{"tokens": true}, "tooling": map[string]any{"tool_denymap": []string{"tool.echo"}}}
	runID := b.createRun("tnt_a", "agt_echo", body)

	// The first word is in the store while the model call still waits.
	require.Eventually(t, func() bool {
		evs, err := b.db.ListEvents(context.Background(), store.ListEventsParams{TenantID: "tnt_a", RunID: runID})
		require.NoError(t, err)
		for _, e := range evs {
			require.NotEqual(t, store.EventModelCompleted, e.Type)
			if e.Type == store.EventModelDelta {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond)
	close(m.gate)
	b.waitStatus("tnt_a", runID, store.RunCompleted)

	evs := b.streamEvents("tnt_a", runID)
	requireGapless(t, evs, 1)
	var text strings.Builder
	completed := -1
	for i, e := range evs {
		switch e.Type {
		case store.EventModelDelta:
			require.Equal(t, -1, completed, "a delta after model.completed")
			idx, s := deltaText(t, e)
			require.Equal(t, strings.Count(eventTypesString(evs[:i]), store.EventModelDelta), idx)
			text.WriteString(s)
		case store.EventModelCompleted:
			completed = i
		}
	}
	run, err := b.db.GetRun(context.Background(), "tnt_a", runID)
	require.NoError(t, err)
	require.Equal(t, run.Output.Text, text.String())
	require.True(t, run.RunOptions.StreamTokens())

	// The run object echoes the option; without it, no deltas.
	resp, out := b.do("GET", "/v1/runs/"+runID, "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, map[string]any{"tokens": true}, out["run"].(map[string]any)["run_options"].(map[string]any)["stream"])
	plain := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "one two", "stream": map[string]any{"tokens": false}})
	b.waitStatus("tnt_a", plain, store.RunCompleted)
	require.NotContains(t, eventTypes(b.streamEvents("tnt_a", plain)), store.EventModelDelta)
	_, out = b.do("GET", "/v1/runs/"+plain, "tnt_a", nil)
	require.NotContains(t, out["run"].(map[string]any)["run_options"], "stream")
}

func eventTypesString(evs []store.Event) string { return strings.Join(eventTypes(evs), " ") }

// A model call retried after its stream broke off starts its deltas over
// at index 0.
func TestTokenDeltasRestartOnRetry(t *testing.T) {
	t.Parallel()
	m := &streamingModel{scriptedModel: &scriptedModel{}}
	m.failFirst.Store(true)
	b := setup(t, bundleOpts{port: m})
	runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "alpha beta gamma", "stream": map[string]any{"tokens": true},
		"tooling": map[string]any{"tool_denymap": []string{"tool.echo"}}})
	b.waitStatus("tnt_a", runID, store.RunCompleted)
	var idx []int
	var last strings.Builder
	for _, e := range b.streamEvents("tnt_a", runID) {
		if e.Type == store.EventModelDelta {
			i, s := deltaText(t, e)
			if i == 0 {
				last.Reset()
			}
			idx = append(idx, i)
			last.WriteString(s)
		}
	}
	require.Equal(t, 0, idx[0])
	require.Contains(t, idx[1:], 0, "the retried call starts at index 0: %v", idx)
	require.Equal(t, "Echo: alpha beta gamma", last.String())
}

func TestRunStreamValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{noExec: true})
	for _, tc := range []struct {
		stream any
		field  string
	}{
		{"yes", "stream"},
		{[]any{true}, "stream"},
		{map[string]any{"tokens": "yes"}, "stream.tokens"},
	} {
		resp, out := b.do("POST", "/v1/agents/agt_echo/runs", "tnt_a", map[string]any{"input": "x", "stream": tc.stream})
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, out)
		require.Equal(t, tc.field, out["error"].(map[string]any)["details"].(map[string]any)["field"])
	}
}
