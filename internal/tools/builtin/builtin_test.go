package builtin_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/tools/toolstest"
)

func TestRegister(t *testing.T) {
	t.Parallel()
	reg := tools.NewRegistry()
	require.NoError(t, builtin.Register(reg, builtin.Deps{KV: newMemKV()}))
	require.Equal(t, []string{"tool.echo", "tool.http.fetch", "tool.kv.get", "tool.kv.put", "tool.sleep"}, reg.IDs())

	// Registering twice conflicts.
	require.ErrorIs(t, builtin.Register(reg, builtin.Deps{KV: newMemKV()}), errs.ErrConflict)
	// KV is required.
	require.Error(t, builtin.Register(tools.NewRegistry(), builtin.Deps{}))

	out, err := tools.Invoke(context.Background(), reg, toolstest.Call("", []byte(`{"text":"hi"}`)), builtin.EchoID, 0)
	require.NoError(t, err)
	require.JSONEq(t, `{"text":"hi"}`, string(out))
}

func TestEchoConformance(t *testing.T) {
	t.Parallel()
	toolstest.Run(t, func(*testing.T) tools.Tool { return builtin.Echo() },
		toolstest.Case{Name: "hello", Input: []byte(`{"text":"hello"}`), Check: func(t *testing.T, out json.RawMessage) {
			require.JSONEq(t, `{"text":"hello"}`, string(out))
		}},
		toolstest.Case{Name: "unicode and extra fields", Input: []byte(`{"text":"héllo \u2603","extra":1}`), Check: func(t *testing.T, out json.RawMessage) {
			require.JSONEq(t, `{"text":"héllo ☃"}`, string(out))
		}},
		toolstest.Case{Name: "HTML characters are not escaped", Input: []byte(`{"text":"<a&b>"}`), Check: func(t *testing.T, out json.RawMessage) {
			require.Equal(t, `{"text":"<a&b>"}`, string(out), "no \\u003c: output stays the size of its input")
		}},
		toolstest.Case{Name: "empty text", Input: []byte(`{"text":""}`), Check: func(t *testing.T, out json.RawMessage) {
			require.JSONEq(t, `{"text":""}`, string(out))
		}},
		toolstest.Case{Name: "missing text", Input: []byte(`{}`), WantCode: errs.InvalidRequest, WantField: "text"},
		toolstest.Case{Name: "number text", Input: []byte(`{"text":5}`), WantCode: errs.InvalidRequest, WantField: "text"},
	)
}
