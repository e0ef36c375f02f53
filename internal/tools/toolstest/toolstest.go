// Package toolstest is the conformance suite every tool adapter (builtin,
// webhook, MCP, remote) must pass: a well-formed Spec, invalid_request
// naming the field for bad input, prompt return once the context is
// canceled or past its deadline, *errs.Error for every error, repeatable
// results for idempotent tools, and the caller's own cases.
package toolstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/tools"
)

// DefaultTenant is the tenant of the suite's calls unless a Case sets one.
const DefaultTenant = "tnt_toolstest"

// hangLimit is how long the suite waits for a tool to return after its
// context ended before declaring it stuck. It only detects hangs.
const hangLimit = 20 * time.Second

// Case is one input the suite runs against a fresh tool.
type Case struct {
	// Name names the subtest (default "case_<n>").
	Name string
	// Input is the call's input.
	Input json.RawMessage
	// TenantID is the call's tenant (default DefaultTenant).
	TenantID string
	// WantCode is the expected error code; empty means success.
	WantCode errs.Code
	// WantField, if set, is the field an invalid_request error must name.
	WantField string
	// Check, if set, inspects the output of a successful call.
	Check func(t *testing.T, out json.RawMessage)
	// Blocks marks a valid input on which the tool works until its context
	// ends (say, a fetch from a server that never answers). The suite
	// cancels such calls mid-flight and expects a prompt error; it does not
	// run them as ordinary cases.
	Blocks bool
}

// Call builds the suite's call for input in tenant (DefaultTenant when
// empty).
func Call(tenant string, input json.RawMessage) tools.Call {
	if tenant == "" {
		tenant = DefaultTenant
	}
	return tools.Call{
		Auth: auth.Context{
			TenantID:  tenant,
			Principal: auth.Principal{PrincipalID: "usr_toolstest", PrincipalType: "user"},
			Scopes:    []string{auth.ScopeToolsInvoke, auth.ScopeMemoryRead, auth.ScopeMemoryWrite},
			Roles:     []string{auth.RoleTenantUser},
		},
		TenantID:   tenant,
		AgentID:    "agt_toolstest",
		RunID:      "run_toolstest",
		ToolCallID: "tcall_toolstest",
		Input:      input,
	}
}

// Run runs the conformance suite. newTool must return a fresh tool (with
// fresh state) on every call; cases should include at least one
// successful input, which the suite uses as the base for its own invalid
// inputs and cancellation checks.
func Run(t *testing.T, newTool func(t *testing.T) tools.Tool, cases ...Case) {
	t.Helper()
	for i := range cases {
		if cases[i].Name == "" {
			cases[i].Name = fmt.Sprintf("case_%d", i)
		}
	}
	var valid *Case
	for i := range cases {
		if cases[i].WantCode == "" && !cases[i].Blocks {
			valid = &cases[i]
			break
		}
	}

	t.Run("spec", func(t *testing.T) {
		t.Parallel()
		tl := newTool(t)
		s := tl.Spec()
		require.NoError(t, tools.CheckSpec(s))
		require.True(t, strings.HasPrefix(s.ToolID, tools.IDPrefix), "tool id %q", s.ToolID)
		require.Equal(t, s, tl.Spec(), "Spec must be stable")
		var schema map[string]any
		require.NoError(t, json.Unmarshal(s.InputSchema, &schema))
		require.Equal(t, "object", schema["type"])
		b, err := json.Marshal(s)
		require.NoError(t, err)
		require.Contains(t, string(b), `"tool_id":"`+s.ToolID+`"`)

		reg := tools.NewRegistry()
		require.NoError(t, reg.Register(tl))
		require.Equal(t, []string{s.ToolID}, reg.IDs())
		require.ErrorIs(t, reg.Register(newTool(t)), errs.ErrConflict)
	})

	t.Run("invalid_input", func(t *testing.T) {
		t.Parallel()
		for _, in := range []string{`[]`, `"text"`, `42`, `true`, `{`, `{"a":1} x`} {
			requireInvalid(t, newTool(t), Call("", json.RawMessage(in)), "")
		}
		if valid == nil {
			return
		}
		tl := newTool(t)
		schema := parseSchema(t, tl.Spec().InputSchema)
		base := objectOf(t, valid.Input)
		for _, name := range schema.Required {
			in := cloneWithout(base, name)
			requireInvalid(t, newTool(t), Call(valid.TenantID, marshal(t, in)), name)
		}
		for name, prop := range schema.Properties {
			wrong, ok := wrongTypeValue(prop.types())
			if !ok {
				continue
			}
			in := cloneWithout(base, "")
			in[name] = wrong
			requireInvalid(t, newTool(t), Call(valid.TenantID, marshal(t, in)), name)
		}
	})

	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		in, tenant := baseInput(valid, cases)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := invokeWithin(t, newTool(t), ctx, Call(tenant, in))
		require.Error(t, err, "a canceled call must fail")
		requireErrsError(t, err)
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("deadline_passed", func(t *testing.T) {
		t.Parallel()
		in, tenant := baseInput(valid, cases)
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		err := invokeWithin(t, newTool(t), ctx, Call(tenant, in))
		require.Error(t, err, "a call past its deadline must fail")
		require.Equal(t, errs.Timeout, errs.CodeOf(err), "err: %v", err)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})

	for _, c := range cases {
		if !c.Blocks {
			continue
		}
		t.Run("cancel_mid_call/"+c.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			// Cancel once the call is (very likely) under way; the check
			// below holds whenever the cancel lands.
			stop := time.AfterFunc(50*time.Millisecond, cancel)
			defer stop.Stop()
			err := invokeWithin(t, newTool(t), ctx, Call(c.TenantID, c.Input))
			require.Error(t, err)
			requireErrsError(t, err)
			require.ErrorIs(t, err, context.Canceled)

			tctx, tcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer tcancel()
			err = invokeWithin(t, newTool(t), tctx, Call(c.TenantID, c.Input))
			require.Equal(t, errs.Timeout, errs.CodeOf(err), "err: %v", err)
		})
	}

	for _, c := range cases {
		if c.Blocks {
			continue
		}
		t.Run("case/"+c.Name, func(t *testing.T) {
			t.Parallel()
			out, err := newTool(t).Invoke(context.Background(), Call(c.TenantID, c.Input))
			if c.WantCode != "" {
				require.Error(t, err, "want %s, got output %s", c.WantCode, out)
				requireErrsError(t, err)
				require.Equal(t, c.WantCode, errs.CodeOf(err), "err: %v", err)
				if c.WantField != "" {
					require.Equal(t, c.WantField, errs.As(err).Details["field"], "err: %v", err)
				}
				return
			}
			require.NoError(t, err)
			require.True(t, json.Valid(out), "output is not JSON: %q", out)
			if c.Check != nil {
				c.Check(t, out)
			}
		})
	}

	t.Run("registry_invoke", func(t *testing.T) {
		t.Parallel()
		if valid == nil {
			t.Skip("no successful case given")
		}
		tl := newTool(t)
		reg := tools.NewRegistry()
		require.NoError(t, reg.Register(tl))
		out, err := tools.Invoke(context.Background(), reg, Call(valid.TenantID, valid.Input), tl.Spec().ToolID, 0)
		require.NoError(t, err)
		if valid.Check != nil {
			valid.Check(t, out)
		}
	})

	t.Run("idempotent", func(t *testing.T) {
		t.Parallel()
		tl := newTool(t)
		if !tl.Spec().Idempotent {
			t.Skip("tool is not idempotent")
		}
		for _, c := range cases {
			if c.WantCode != "" || c.Blocks {
				continue
			}
			tl := newTool(t)
			first, err := tl.Invoke(context.Background(), Call(c.TenantID, c.Input))
			require.NoError(t, err, c.Name)
			again, err := tl.Invoke(context.Background(), Call(c.TenantID, c.Input))
			require.NoError(t, err, c.Name)
			require.JSONEq(t, string(first), string(again), "%s: a repeated idempotent call must give the same result", c.Name)
		}
	})
}

// baseInput returns a valid input for the cancellation checks.
func baseInput(valid *Case, cases []Case) (json.RawMessage, string) {
	if valid != nil {
		return valid.Input, valid.TenantID
	}
	for _, c := range cases {
		if c.Blocks {
			return c.Input, c.TenantID
		}
	}
	return json.RawMessage(`{}`), ""
}

// invokeWithin invokes tl and fails the test if it does not return within
// hangLimit after ctx ends.
func invokeWithin(t *testing.T, tl tools.Tool, ctx context.Context, c tools.Call) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := tl.Invoke(ctx, c)
		done <- err
	}()
	<-ctx.Done()
	select {
	case err := <-done:
		return err
	case <-time.After(hangLimit):
		t.Fatalf("%s did not return within %s after its context ended", tl.Spec().ToolID, hangLimit)
		return nil
	}
}

func requireErrsError(t *testing.T, err error) {
	t.Helper()
	var e *errs.Error
	require.True(t, errors.As(err, &e), "error is not an *errs.Error: %T %v", err, err)
}

// requireInvalid checks that the tool, called directly and through
// tools.Invoke, rejects c as invalid_request naming field (any field when
// field is empty).
func requireInvalid(t *testing.T, tl tools.Tool, c tools.Call, field string) {
	t.Helper()
	_, err := tl.Invoke(context.Background(), c)
	checkInvalid(t, err, c, field)

	reg := tools.NewRegistry()
	require.NoError(t, reg.Register(tl))
	_, err = tools.Invoke(context.Background(), reg, c, tl.Spec().ToolID, 0)
	checkInvalid(t, err, c, field)
}

func checkInvalid(t *testing.T, err error, c tools.Call, field string) {
	t.Helper()
	require.Error(t, err, "input %s must be rejected", c.Input)
	requireErrsError(t, err)
	e := errs.As(err)
	require.Equal(t, errs.InvalidRequest, e.Code, "input %s: %v", c.Input, err)
	if field != "" {
		require.Equal(t, field, e.Details["field"], "input %s: %v", c.Input, err)
	}
}

// schemaDoc is the part of an input schema the suite reads.
type schemaDoc struct {
	Properties map[string]propDoc `json:"properties"`
	Required   []string           `json:"required"`
}

type propDoc struct {
	Type json.RawMessage `json:"type"`
}

func (p propDoc) types() []string {
	var one string
	if json.Unmarshal(p.Type, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(p.Type, &many)
	return many
}

func parseSchema(t *testing.T, raw json.RawMessage) schemaDoc {
	t.Helper()
	var s schemaDoc
	require.NoError(t, json.Unmarshal(raw, &s))
	return s
}

// wrongTypeValue returns a JSON value of a type the declared types do not
// allow, or false when any type is allowed.
func wrongTypeValue(types []string) (json.RawMessage, bool) {
	if len(types) == 0 {
		return nil, false
	}
	candidates := []struct{ typ, value string }{
		{"boolean", `true`},
		{"string", `"toolstest"`},
		{"array", `[1]`},
		{"object", `{"toolstest":1}`},
		{"number", `1.5`},
	}
	for _, c := range candidates {
		if !slices.Contains(types, c.typ) {
			return json.RawMessage(c.value), true
		}
	}
	return nil, false
}

func objectOf(t *testing.T, in json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(in, &m), "the successful case's input must be a JSON object")
	return m
}

func cloneWithout(m map[string]json.RawMessage, drop string) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		if k != drop {
			out[k] = v
		}
	}
	return out
}

func marshal(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
