package errs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// FromContext is the one mapping of context errors; As applies it to a
// bare context error instead of calling it internal.
func TestFromContext(t *testing.T) {
	t.Parallel()
	wrapped := fmt.Errorf("query: %w", context.Canceled)
	e := FromContext(wrapped, "store operation")
	require.Equal(t, Canceled, e.Code)
	require.Equal(t, "store operation canceled", e.Message)
	require.ErrorIs(t, e, context.Canceled)
	require.False(t, e.Code.Retryable(), "nobody waits for the answer")

	e = FromContext(fmt.Errorf("%w: %w", context.Canceled, context.DeadlineExceeded), "tool x")
	require.Equal(t, Timeout, e.Code, "a deadline wins")
	require.Equal(t, "tool x timed out", e.Message)
	require.True(t, e.Code.Retryable())

	require.Nil(t, FromContext(errors.New("disk full"), "x"))
	require.Nil(t, FromContext(nil, "x"))

	require.Equal(t, Canceled, As(context.Canceled).Code)
	require.Equal(t, Timeout, As(context.DeadlineExceeded).Code)
	require.Equal(t, Internal, As(errors.New("boom")).Code)
	require.Equal(t, NotFound, As(E(NotFound, "x")).Code, "an *Error keeps its code")
}
