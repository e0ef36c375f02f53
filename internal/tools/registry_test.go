package tools_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/tools"
)

// funcTool is a test tool whose behaviour is a function.
type funcTool struct {
	spec tools.Spec
	fn   func(ctx context.Context, c tools.Call) (json.RawMessage, error)
}

func (f *funcTool) Spec() tools.Spec { return f.spec }
func (f *funcTool) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	return f.fn(ctx, c)
}

func newFuncTool(id string, fn func(ctx context.Context, c tools.Call) (json.RawMessage, error)) *funcTool {
	return &funcTool{
		spec: tools.Spec{
			ToolID: id, Name: id, Description: "test tool " + id,
			InputSchema: json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer"}}}`),
		},
		fn: fn,
	}
}

func okFn(context.Context, tools.Call) (json.RawMessage, error) {
	return json.RawMessage(`{"ok":true}`), nil
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	reg := tools.NewRegistry()
	require.NoError(t, reg.Register(newFuncTool("tool.b", okFn)))
	require.NoError(t, reg.Register(newFuncTool("tool.a", okFn)))
	require.NoError(t, reg.Register(newFuncTool("tool.c", okFn)))

	err := reg.Register(newFuncTool("tool.a", okFn))
	require.ErrorIs(t, err, errs.ErrConflict)

	require.Equal(t, []string{"tool.a", "tool.b", "tool.c"}, reg.IDs())

	got, ok := reg.Get("tool.b")
	require.True(t, ok)
	require.Equal(t, "tool.b", got.Spec().ToolID)
	_, ok = reg.Get("tool.zzz")
	require.False(t, ok)

	specs := reg.Specs([]string{"tool.c", "tool.unknown", "tool.a", "tool.c"})
	require.Len(t, specs, 2)
	require.Equal(t, "tool.c", specs[0].ToolID)
	require.Equal(t, "tool.a", specs[1].ToolID)
	require.Empty(t, reg.Specs(nil))
}

func TestRegistryRejectsMalformedSpecs(t *testing.T) {
	t.Parallel()
	valid := newFuncTool("tool.ok", okFn).spec
	cases := map[string]struct {
		mut   func(s *tools.Spec)
		field string
	}{
		"no prefix":      {func(s *tools.Spec) { s.ToolID = "echo" }, "tool_id"},
		"prefix only":    {func(s *tools.Spec) { s.ToolID = "tool." }, "tool_id"},
		"space in id":    {func(s *tools.Spec) { s.ToolID = "tool.a b" }, "tool_id"},
		"no name":        {func(s *tools.Spec) { s.Name = " " }, "name"},
		"no description": {func(s *tools.Spec) { s.Description = "" }, "description"},
		"no schema":      {func(s *tools.Spec) { s.InputSchema = nil }, "input_schema"},
		"array schema":   {func(s *tools.Spec) { s.InputSchema = json.RawMessage(`{"type":"array"}`) }, "input_schema"},
		"bad type": {func(s *tools.Spec) {
			s.InputSchema = json.RawMessage(`{"type":"object","properties":{"a":{"type":"str"}}}`)
		}, "input_schema"},
		"not json":        {func(s *tools.Spec) { s.InputSchema = json.RawMessage(`{`) }, "input_schema"},
		"negative timout": {func(s *tools.Spec) { s.DefaultTimeout = -1 }, "default_timeout"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := valid
			tc.mut(&s)
			reg := tools.NewRegistry()
			err := reg.Register(&funcTool{spec: s, fn: okFn})
			require.ErrorIs(t, err, errs.ErrInvalid)
			require.Equal(t, tc.field, errs.As(err).Details["field"])
			require.Empty(t, reg.IDs())
		})
	}
	require.ErrorIs(t, tools.NewRegistry().Register(nil), errs.ErrInvalid)
}
