package store_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

func modelStep(idx int, content string, callIDs ...string) store.Step {
	var calls []map[string]any
	for _, id := range callIDs {
		calls = append(calls, map[string]any{"id": id, "tool_id": "tool.echo", "name": "tool.echo", "arguments": map[string]any{"text": "x"}})
	}
	out, _ := json.Marshal(map[string]any{"status": "ok", "message": map[string]any{"role": "assistant", "content": content}, "tool_calls": calls})
	return store.Step{StepID: "stp_m", Index: idx, Kind: store.StepModel, Status: store.StepCompleted, Output: out}
}

func toolStep(idx int, callID, status string) store.Step {
	in, _ := json.Marshal(map[string]any{"model_call_id": callID})
	out, _ := json.Marshal(map[string]any{"status": "ok", "output": map[string]any{"text": "x"}})
	return store.Step{StepID: "stp_t", Index: idx, Kind: store.StepTool, Status: status, Input: in, Output: out}
}

func TestTurnMessages(t *testing.T) {
	t.Parallel()
	in := store.RunInput{Type: "text", Text: "hi"}
	// A whole turn: user, tool-call plan, result, answer.
	got := store.TurnMessages("run_1", in, []store.Step{modelStep(0, "", "c1"), toolStep(1, "c1", store.StepCompleted), modelStep(2, "done")})
	require.Len(t, got, 4)
	require.Equal(t, []string{"user", "assistant", "tool", "assistant"}, roles(got))
	require.JSONEq(t, `[{"id":"c1","tool_id":"tool.echo","name":"tool.echo","arguments":{"text":"x"}}]`, string(got[1].ToolCalls))
	require.Equal(t, "c1", got[2].ToolCallID)
	require.Equal(t, `{"text":"x"}`, got[2].Content)

	// Canceled between two tool calls of one plan: only the answered one
	// stays, so the thread remains a valid chat.
	got = store.TurnMessages("run_1", in, []store.Step{modelStep(0, "", "c1", "c2"), toolStep(1, "c1", store.StepCompleted), toolStep(2, "c2", store.StepStarted)})
	require.Equal(t, []string{"user", "assistant", "tool"}, roles(got))
	var calls []map[string]any
	require.NoError(t, json.Unmarshal(got[1].ToolCalls, &calls))
	require.Len(t, calls, 1)
	require.Equal(t, "c1", calls[0]["id"])

	// Canceled before any tool answered: the plan is dropped.
	got = store.TurnMessages("run_1", in, []store.Step{modelStep(0, "", "c1")})
	require.Equal(t, []string{"user"}, roles(got))

	// A failed tool is reported as its status and error.
	failed := toolStep(1, "c1", store.StepFailed)
	failed.Output = json.RawMessage(`{"status":"timeout","error":{"code":"timeout","message":"slow"}}`)
	got = store.TurnMessages("run_1", in, []store.Step{modelStep(0, "", "c1"), failed})
	require.JSONEq(t, `{"status":"timeout","error":{"code":"timeout","message":"slow","retryable":false}}`, got[2].Content)
}

func roles(ms []store.ThreadMessage) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Role)
	}
	return out
}

// FuzzTurnMessages feeds arbitrary step records: TurnMessages never
// panics, starts with the user's input, and every tool message answers a
// tool call of an assistant message before it.
func FuzzTurnMessages(f *testing.F) {
	f.Add([]byte(`{"message":{"content":"a"},"tool_calls":[{"id":"c1"}]}`), []byte(`{"model_call_id":"c1"}`), []byte(`{"status":"ok","output":{}}`))
	f.Add([]byte(`null`), []byte(`[]`), []byte(`{"status":"error"}`))
	f.Add([]byte(`{"tool_calls":"x"}`), []byte(`{"model_call_id":7}`), []byte(``))
	f.Fuzz(func(t *testing.T, modelOut, toolIn, toolOut []byte) {
		steps := []store.Step{
			{Kind: store.StepModel, Status: store.StepCompleted, Output: modelOut},
			{Kind: store.StepTool, Status: store.StepCompleted, Input: toolIn, Output: toolOut},
		}
		msgs := store.TurnMessages("run_f", store.RunInput{Text: "in"}, steps)
		require.NotEmpty(t, msgs)
		require.Equal(t, "user", msgs[0].Role)
		require.Equal(t, "in", msgs[0].Content)
		offered := map[string]bool{}
		for _, m := range msgs {
			if len(m.ToolCalls) > 0 {
				var calls []struct {
					ID string `json:"id"`
				}
				require.NoError(t, json.Unmarshal(m.ToolCalls, &calls))
				for _, c := range calls {
					offered[c.ID] = true
				}
			}
			if m.Role == "tool" {
				require.True(t, offered[m.ToolCallID], "tool message %q answers no call before it", m.ToolCallID)
			}
		}
	})
}

func TestValidateThreadMetadata(t *testing.T) {
	t.Parallel()
	require.NoError(t, store.ValidateThreadMetadata("metadata", map[string]string{"user": "u", "a.b-c_d": ""}))
	for name, m := range map[string]map[string]string{
		"empty key": {"": "x"},
		"space":     {"a b": "x"},
		"quote":     {`a"b`: "x"},
		"long":      {"k": string(make([]byte, store.MaxThreadMetadataValue+1))},
	} {
		require.Error(t, store.ValidateThreadMetadata("metadata", m), name)
	}
	many := map[string]string{}
	for i := range store.MaxThreadMetadataPairs + 1 {
		many[string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	require.Error(t, store.ValidateThreadMetadata("metadata", many))
}
