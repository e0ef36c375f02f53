package node

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Successful requests' access-log lines wait; any other record is written
// at once with the waiting lines before it, in order; waiting lines are
// written by the timer too.
func TestAccessLogIsBufferedErrorsAreNot(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	l := slog.New(newLogHandler(&out, nil)).With("service", "test")

	l.Info(accessLogMsg, "status", 200, "path", "/a")
	require.Empty(t, out.String(), "a successful request's line waits")
	l.Error(accessLogMsg, "status", 500, "path", "/b")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2, "a 5xx line is written at once, after the waiting one")
	require.Contains(t, lines[0], `"path":"/a"`)
	require.Contains(t, lines[1], `"path":"/b"`)

	l.Info(accessLogMsg, "status", 200, "path", "/c")
	l.Info("listening", "addr", "127.0.0.1:1")
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 4, "any other record is written at once")
	require.Contains(t, lines[2], `"path":"/c"`)
	require.Contains(t, lines[3], `"msg":"listening"`)

	l.Info(accessLogMsg, "status", 200, "path", "/d")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"path":"/d"`) },
		10*time.Second, time.Millisecond, "the timer writes waiting lines")
}

// A burst larger than the limit is written without waiting for the timer.
func TestAccessLogBufferIsBounded(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	l := slog.New(newLogHandler(&out, nil))
	pad := strings.Repeat("x", 1024)
	for range accessLogLimit/1024 + 1 {
		l.Info(accessLogMsg, "pad", pad)
	}
	require.NotEmpty(t, out.String())
}
