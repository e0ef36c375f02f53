package ids_test

import (
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/ids"
)

func TestDerived(t *testing.T) {
	t.Parallel()
	a := ids.Derived("thr_", "a2a\x00tnt_a\x00usr_1\x00agt_x\x00m-1")
	require.Equal(t, a, ids.Derived("thr_", "a2a\x00tnt_a\x00usr_1\x00agt_x\x00m-1"), "same key, same id")
	require.NotEqual(t, a, ids.Derived("thr_", "a2a\x00tnt_a\x00usr_1\x00agt_x\x00m-2"))
	require.NotEqual(t, a, ids.Derived("thr_", "a2a\x00tnt_b\x00usr_1\x00agt_x\x00m-1"))
	rest, ok := strings.CutPrefix(a, "thr_")
	require.True(t, ok, a)
	require.Equal(t, strings.ToLower(rest), rest)
	_, err := ulid.ParseStrict(strings.ToUpper(rest))
	require.NoError(t, err, "ULID-shaped like ids.New's")
	require.Len(t, ids.New("thr_"), len(a))
}
