package tools_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/tools"
)

func blockUntilDone(ctx context.Context, _ tools.Call) (json.RawMessage, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestInvoke(t *testing.T) {
	t.Parallel()

	type bundle struct {
		reg *tools.Registry
	}
	setup := func(t *testing.T, tl ...tools.Tool) bundle {
		t.Helper()
		reg := tools.NewRegistry()
		for _, x := range tl {
			require.NoError(t, reg.Register(x))
		}
		return bundle{reg: reg}
	}
	call := tools.Call{TenantID: "tnt_a", Input: json.RawMessage(`{"n":1}`)}

	t.Run("ok", func(t *testing.T) {
		t.Parallel()
		var got tools.Call
		b := setup(t, newFuncTool("tool.ok", func(_ context.Context, c tools.Call) (json.RawMessage, error) {
			got = c
			return json.RawMessage(`{"ok":true}`), nil
		}))
		out, err := tools.Invoke(context.Background(), b.reg, call, "tool.ok", 0)
		require.NoError(t, err)
		require.JSONEq(t, `{"ok":true}`, string(out))
		require.Equal(t, "tnt_a", got.TenantID)
	})

	t.Run("unknown tool", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := tools.Invoke(context.Background(), b.reg, call, "tool.nope", 0)
		require.ErrorIs(t, err, errs.ErrNotFound)
	})

	t.Run("invalid input never reaches the tool", func(t *testing.T) {
		t.Parallel()
		var calls atomic.Int32
		b := setup(t, newFuncTool("tool.ok", func(context.Context, tools.Call) (json.RawMessage, error) {
			calls.Add(1)
			return json.RawMessage(`{}`), nil
		}))
		c := call
		c.Input = json.RawMessage(`{"n":"one"}`)
		_, err := tools.Invoke(context.Background(), b.reg, c, "tool.ok", 0)
		require.ErrorIs(t, err, errs.ErrInvalid)
		require.Equal(t, "n", errs.As(err).Details["field"])
		require.Zero(t, calls.Load())
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newFuncTool("tool.slow", blockUntilDone))
		_, err := tools.Invoke(context.Background(), b.reg, call, "tool.slow", time.Millisecond)
		require.Equal(t, errs.Timeout, errs.CodeOf(err))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NotErrorIs(t, err, context.Canceled)
	})

	t.Run("spec default timeout", func(t *testing.T) {
		t.Parallel()
		tl := newFuncTool("tool.slow", blockUntilDone)
		tl.spec.DefaultTimeout = time.Millisecond
		b := setup(t, tl)
		_, err := tools.Invoke(context.Background(), b.reg, call, "tool.slow", 0)
		require.Equal(t, errs.Timeout, errs.CodeOf(err))
	})

	t.Run("tool ignoring its deadline does not block the caller", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		b := setup(t, newFuncTool("tool.stuck", func(context.Context, tools.Call) (json.RawMessage, error) {
			<-release
			return json.RawMessage(`{}`), nil
		}))
		_, err := tools.Invoke(context.Background(), b.reg, call, "tool.stuck", time.Millisecond)
		require.Equal(t, errs.Timeout, errs.CodeOf(err))
	})

	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		started := make(chan struct{})
		b := setup(t, newFuncTool("tool.slow", func(ctx context.Context, c tools.Call) (json.RawMessage, error) {
			close(started)
			return blockUntilDone(ctx, c)
		}))
		ctx, cancel := context.WithCancelCause(context.Background())
		go func() { <-started; cancel(errors.New("run canceled by user")) }()
		_, err := tools.Invoke(ctx, b.reg, call, "tool.slow", time.Hour)
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, context.DeadlineExceeded)
		require.NotEqual(t, errs.Timeout, errs.CodeOf(err))
		require.Contains(t, err.Error(), "run canceled by user")
	})

	t.Run("already canceled", func(t *testing.T) {
		t.Parallel()
		var calls atomic.Int32
		b := setup(t, newFuncTool("tool.ok", func(context.Context, tools.Call) (json.RawMessage, error) {
			calls.Add(1)
			return json.RawMessage(`{}`), nil
		}))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := tools.Invoke(ctx, b.reg, call, "tool.ok", 0)
		require.ErrorIs(t, err, context.Canceled)
		require.Zero(t, calls.Load())
	})

	t.Run("panic becomes internal_error", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newFuncTool("tool.panic", func(context.Context, tools.Call) (json.RawMessage, error) {
			panic("boom")
		}))
		_, err := tools.Invoke(context.Background(), b.reg, call, "tool.panic", 0)
		require.Equal(t, errs.Internal, errs.CodeOf(err))
		require.Contains(t, err.Error(), "boom")
		require.NotContains(t, errs.As(err).Message, "boom", "the panic value is internal")
	})

	t.Run("tool errors keep their code", func(t *testing.T) {
		t.Parallel()
		b := setup(t,
			newFuncTool("tool.quota", func(context.Context, tools.Call) (json.RawMessage, error) {
				return nil, errs.E(errs.QuotaExceeded, "full")
			}),
			newFuncTool("tool.plain", func(context.Context, tools.Call) (json.RawMessage, error) {
				return nil, errors.New("disk on fire")
			}),
			newFuncTool("tool.badjson", func(context.Context, tools.Call) (json.RawMessage, error) {
				return json.RawMessage(`{`), nil
			}))
		_, err := tools.Invoke(context.Background(), b.reg, call, "tool.quota", 0)
		require.Equal(t, errs.QuotaExceeded, errs.CodeOf(err))
		_, err = tools.Invoke(context.Background(), b.reg, call, "tool.plain", 0)
		var e *errs.Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, errs.Internal, e.Code)
		require.NotContains(t, e.Message, "disk on fire")
		_, err = tools.Invoke(context.Background(), b.reg, call, "tool.badjson", 0)
		require.Equal(t, errs.Internal, errs.CodeOf(err))
	})

	t.Run("output bound", func(t *testing.T) {
		t.Parallel()
		sized := func(n int) func(context.Context, tools.Call) (json.RawMessage, error) {
			return func(context.Context, tools.Call) (json.RawMessage, error) {
				out, err := json.Marshal(strings.Repeat("x", n-2)) // n bytes with the quotes
				return out, err
			}
		}
		b := setup(t, newFuncTool("tool.max", sized(tools.MaxOutputBytes)), newFuncTool("tool.big", sized(tools.MaxOutputBytes+1)))
		out, err := tools.Invoke(context.Background(), b.reg, call, "tool.max", 0)
		require.NoError(t, err)
		require.Len(t, out, tools.MaxOutputBytes)
		_, err = tools.Invoke(context.Background(), b.reg, call, "tool.big", 0)
		e := errs.As(err)
		require.Equal(t, errs.Internal, e.Code)
		require.Contains(t, e.Message, "tool.big returned 1048577 bytes")
		require.Equal(t, tools.MaxOutputBytes, e.Details["limit"])
	})
}

// InvokeTool is the path for a tool in no registry (a tenant's webhook):
// the same validation, deadline and recovery as Invoke.
func TestInvokeTool(t *testing.T) {
	t.Parallel()
	call := tools.Call{TenantID: "tnt_a", Input: json.RawMessage(`{"n":1}`)}
	out, err := tools.InvokeTool(context.Background(), newFuncTool("tool.ok", okFn), call, 0)
	require.NoError(t, err)
	require.JSONEq(t, `{"ok":true}`, string(out))

	bad := call
	bad.Input = json.RawMessage(`{"n":"one"}`)
	_, err = tools.InvokeTool(context.Background(), newFuncTool("tool.ok", okFn), bad, 0)
	require.Equal(t, "n", errs.As(err).Details["field"])

	_, err = tools.InvokeTool(context.Background(), newFuncTool("tool.slow", blockUntilDone), call, time.Millisecond)
	require.Equal(t, errs.Timeout, errs.CodeOf(err))

	_, err = tools.InvokeTool(context.Background(), newFuncTool("tool.panic", func(context.Context, tools.Call) (json.RawMessage, error) {
		panic("boom")
	}), call, 0)
	require.Equal(t, errs.Internal, errs.CodeOf(err))

	nothing := newFuncTool("tool.nothing", func(context.Context, tools.Call) (json.RawMessage, error) { return nil, nil })
	out, err = tools.InvokeTool(context.Background(), nothing, call, 0)
	require.NoError(t, err)
	require.Equal(t, "null", string(out))
}

func TestContextError(t *testing.T) {
	t.Parallel()
	require.NoError(t, tools.ContextError(context.Background(), "tool.x"))
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	require.Equal(t, errs.Timeout, errs.CodeOf(tools.ContextError(ctx, "tool.x")))
}
