package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
)

// syncBuffer is a log sink safe for the server's goroutines.
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

// TestClientDisconnectIsNotA5xx: a client that hangs up while its request
// waits on a dependency is counted and logged as 499 canceled, not as a
// 5xx, whatever code the layer that noticed gave it: here one handler
// returns the store's mapping of its canceled context and another a
// dependency_unavailable wrapping the cancellation, as an outbound call
// cut short does.
func TestClientDisconnectIsNotA5xx(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	m := NewHTTP(reg, "test")
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))

	entered := make(chan struct{}, 1)
	finished := make(chan struct{}, 2)
	wait := func(r *http.Request) error {
		entered <- struct{}{}
		<-r.Context().Done() // the client hangs up
		return r.Context().Err()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /store", httpx.H(func(w http.ResponseWriter, r *http.Request) error {
		err := wait(r)
		return errs.FromContext(err, "store operation")
	}))
	mux.Handle("GET /dependency", httpx.H(func(w http.ResponseWriter, r *http.Request) error {
		err := wait(r)
		return errs.Wrap(errs.DependencyUnavailable, err, "model-policy is unreachable")
	}))
	observe := func(r *http.Request, status int, d time.Duration) {
		m.Observe(r, status, d)
		finished <- struct{}{}
	}
	srv := httptest.NewServer(httpx.Chain(httpx.Routed(mux), httpx.Standard(logger, observe)...))
	t.Cleanup(srv.Close)

	for _, path := range []string{"/store", "/dependency"} {
		ctx, cancel := context.WithCancel(t.Context())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		go func() { <-entered; cancel() }()
		_, err = http.DefaultClient.Do(req)
		require.ErrorIs(t, err, context.Canceled)
		<-finished // the server has logged and counted the request
	}

	counts := map[string]float64{}
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != "agentos_http_requests_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			counts[labels["route"]+" "+labels["code"]] += mt.GetCounter().GetValue()
		}
	}
	require.Equal(t, map[string]float64{"GET /store 499": 1, "GET /dependency 499": 1}, counts)

	var lines int
	for line := range strings.Lines(logs.String()) {
		var rec struct {
			Level  string `json:"level"`
			Msg    string `json:"msg"`
			Status int    `json:"status"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		require.NotEqual(t, "ERROR", rec.Level, "a client hanging up is no server error: %s", line)
		if rec.Msg == "http request" {
			lines++
			require.Equal(t, httpx.StatusClientClosedRequest, rec.Status, line)
		}
	}
	require.Equal(t, 2, lines)
}

// TestCanceledCodeStatus: the code's status, retryability and mapping
// back from a status, in the one table.
func TestCanceledCodeStatus(t *testing.T) {
	t.Parallel()
	require.Equal(t, 499, httpx.StatusOf(errs.Canceled))
	require.Equal(t, errs.Canceled, httpx.CodeFromStatus(499))
	require.False(t, errs.Canceled.Retryable())
	require.Equal(t, errs.Canceled, errs.As(context.Canceled).Code)
	require.Equal(t, errs.Timeout, errs.As(context.DeadlineExceeded).Code)
	require.Nil(t, errs.FromContext(errors.New("other"), "x"))
}
