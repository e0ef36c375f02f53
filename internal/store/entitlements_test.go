package store_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

func TestEntitlements(t *testing.T) {
	t.Parallel()
	e := store.Entitlements{
		ModelTiersAllowed:    []string{"small"},
		ModelBackendsAllowed: []string{"*"},
		ToolIDsAllowed:       nil,
	}
	require.True(t, e.AllowsTier("small"))
	require.False(t, e.AllowsTier("large"))
	require.True(t, e.AllowsBackend("openai"), `"*" allows every backend`)
	require.False(t, e.AllowsTool("tool.echo"), "an empty list allows nothing")
	require.True(t, store.Entitlements{ToolIDsAllowed: []string{"tool.kv.get", "*"}}.AllowsTool("tool.echo"))
	require.False(t, store.Allows([]string{"a"}, ""))
}
