package cli

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestProgressPlain(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	p := NewProgress(&b, false)
	p.Phase("boot")
	p.Milestone("services healthy", 1, 3)
	p.Info("hello %d", 7)
	p.Phase("seed")
	p.End(errors.New("no tenant"), "")
	p.Skip("validate", "--skip-validate")
	out := b.String()
	require.NotContains(t, out, "\r", "no cursor control when not a terminal")
	require.Contains(t, out, "==> boot\n    services healthy 1/3\n    hello 7\nok   boot")
	require.Contains(t, out, "FAIL seed")
	res := p.Results()
	require.Len(t, res, 3)
	require.Equal(t, "ok", res[0].Status)
	require.Equal(t, "services healthy 1/3", res[0].Detail)
	require.Equal(t, "failed", res[1].Status)
	require.Equal(t, "no tenant", res[1].Detail)
	require.Equal(t, "skipped", res[2].Status)
}

// syncBuffer is a bytes.Buffer safe for the spinner goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestProgressTerminalSpinner(t *testing.T) {
	t.Parallel()
	var b syncBuffer
	p := NewProgress(&b, true)
	p.Phase("boot")
	p.Milestone("services healthy", 2, 3)
	p.End(nil, "")
	out := b.String()
	require.Contains(t, out, "\r\033[K")
	require.Contains(t, out, "services healthy 2/3")
	require.True(t, strings.Contains(out, "✓ boot"))
}
