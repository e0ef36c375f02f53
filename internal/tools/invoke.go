package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/nexixai/agentos/internal/errs"
)

// FallbackTimeout applies when neither the call nor the tool's Spec sets a
// timeout.
const FallbackTimeout = 30 * time.Second

// MaxOutputBytes caps what one tool call may return (its JSON output); a
// longer output is an error, so that one tool cannot bloat a run's steps,
// events and the model's context.
const MaxOutputBytes = 1 << 20

// Invoke runs the tool toolID of reg for call, with a deadline of timeout
// (when 0: the tool's Spec.DefaultTimeout, when that is 0: FallbackTimeout).
// It validates call.Input against the tool's input schema first.
//
// Every error is an *errs.Error:
//   - unknown tool: not_found;
//   - input not matching the schema: invalid_request naming the field;
//   - the deadline passed (this timeout or ctx's): timeout, wrapping
//     context.DeadlineExceeded;
//   - ctx canceled: canceled (errs.FromContext), wrapping
//     context.Canceled (and the cancel cause, if any), so callers tell a
//     cancellation from a timeout with errors.Is(err, context.Canceled);
//   - the tool panicked: internal_error;
//   - any other error the tool returns keeps its code, or becomes
//     internal_error when it carries none;
//   - output that is not JSON, or longer than MaxOutputBytes:
//     internal_error.
//
// Invoke returns as soon as the deadline passes or ctx is canceled, even if
// the tool has not returned yet (the tool is expected to stop promptly).
func Invoke(ctx context.Context, reg *Registry, call Call, toolID string, timeout time.Duration) (json.RawMessage, error) {
	t, ok := reg.Get(toolID)
	if !ok {
		return nil, errs.E(errs.NotFound, "tool_id: tool %q is not registered", toolID)
	}
	return InvokeTool(ctx, t, call, timeout)
}

// InvokeTool is Invoke for a tool already looked up (a tenant's webhook
// tool is in no Registry). It is the one way a tool is called: every
// caller gets the same validation, deadline, panic recovery and output
// bound, and the same errors.
func InvokeTool(ctx context.Context, t Tool, call Call, timeout time.Duration) (json.RawMessage, error) {
	spec := t.Spec()
	toolID := spec.ToolID
	if timeout <= 0 {
		timeout = spec.DefaultTimeout
	}
	if timeout <= 0 {
		timeout = FallbackTimeout
	}
	if err := ctx.Err(); err != nil {
		return nil, ContextError(ctx, toolID)
	}
	if err := ValidateInput(spec.InputSchema, call.Input); err != nil {
		return nil, err
	}

	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	type result struct {
		out json.RawMessage
		err error
	}
	done := make(chan result, 1) // buffered: a late tool never blocks
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: errs.Wrap(errs.Internal,
					fmt.Errorf("panic: %v\n%s", p, debug.Stack()), "tool %s failed", toolID)}
			}
		}()
		out, err := t.Invoke(callCtx, call)
		done <- result{out, err}
	}()

	select {
	case r := <-done:
		if r.err != nil {
			if callCtx.Err() != nil {
				return nil, ContextError(callCtx, toolID)
			}
			return nil, errs.As(r.err)
		}
		if len(r.out) == 0 {
			r.out = json.RawMessage("null")
		}
		if len(r.out) > MaxOutputBytes {
			return nil, errs.E(errs.Internal, "tool %s returned %d bytes of output, more than the limit of %d", toolID, len(r.out), MaxOutputBytes).
				WithDetails(map[string]any{"output_bytes": len(r.out), "limit": MaxOutputBytes})
		}
		if !json.Valid(r.out) {
			return nil, errs.E(errs.Internal, "tool %s returned invalid JSON", toolID)
		}
		return r.out, nil
	case <-callCtx.Done():
		return nil, ContextError(callCtx, toolID)
	}
}

// ContextError turns the error of a done ctx into the *errs.Error a tool
// returns (errs.FromContext): timeout wrapping context.DeadlineExceeded
// when the deadline passed, canceled wrapping context.Canceled (and the
// cancel cause, if any) when ctx was canceled. It returns nil when ctx is
// not done.
func ContextError(ctx context.Context, toolID string) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	cause := context.Cause(ctx)
	if cause != nil && cause != err {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	return errs.FromContext(err, "tool "+toolID)
}
