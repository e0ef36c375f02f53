package node

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// The access log ("http request" at info) was a write system call per
// request: about a fifth of the orchestrator's CPU under a GET load. Its
// lines are now gathered in memory and written together at most
// accessLogDelay later (or once 32 KB are waiting). Every other record,
// and every access-log line at warn or above (a 5xx), is written at once
// together with the lines waiting before it, so errors and lifecycle
// messages reach the log as before and in order; a crash loses at most
// the last few milliseconds of successful requests' lines.

const (
	accessLogDelay = 10 * time.Millisecond
	accessLogLimit = 32 << 10
	accessLogMsg   = "http request" // httpx.AccessLog's message
)

// lineBuffer is an io.Writer that holds what it is given until Flush, a
// timer accessLogDelay after the first waiting line, or accessLogLimit.
type lineBuffer struct {
	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	timer *time.Timer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) >= accessLogLimit {
		return len(p), b.flushLocked()
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(accessLogDelay, func() { _ = b.Flush() })
	}
	return len(p), nil
}

// Flush writes every waiting line.
func (b *lineBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *lineBuffer) flushLocked() error {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// flushUnlessAccess is a slog.Handler writing to a lineBuffer that flushes
// it after every record but successful requests' access-log lines.
type flushUnlessAccess struct {
	slog.Handler
	buf *lineBuffer
}

func (h flushUnlessAccess) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Message != accessLogMsg || r.Level >= slog.LevelWarn {
		if ferr := h.buf.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushUnlessAccess) WithAttrs(as []slog.Attr) slog.Handler {
	return flushUnlessAccess{h.Handler.WithAttrs(as), h.buf}
}

func (h flushUnlessAccess) WithGroup(name string) slog.Handler {
	return flushUnlessAccess{h.Handler.WithGroup(name), h.buf}
}

// newLogHandler is the JSON handler of a service on w with the access log
// buffered.
func newLogHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	buf := &lineBuffer{w: w}
	return flushUnlessAccess{slog.NewJSONHandler(buf, opts), buf}
}
