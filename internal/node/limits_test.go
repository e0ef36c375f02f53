package node

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStreamCapDerivation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		nofile uint64
		fds    int
		want   int
	}{
		{1 << 20, 1, 10000},
		{20000, 1, 9872},
		{20000, 2, 4936},
		{1024, 1, 384},
		{1024, 2, 192},
		{100, 1, 16},
		{0, 0, 16},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, StreamCap(tc.nofile, tc.fds), "nofile %d, %d fds a stream", tc.nofile, tc.fds)
	}
}
