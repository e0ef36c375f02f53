package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

// A store call whose caller has gone is canceled, not a (retryable)
// timeout: the one mapping of errs.FromContext.
func TestCanceledContextIsCanceled(t *testing.T) {
	t.Parallel()
	db := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := db.GetTenant(ctx, "tnt_x")
	require.Equal(t, errs.Canceled, errs.CodeOf(err), "err: %v", err)
	require.ErrorIs(t, err, context.Canceled)
}
