package apiclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func TestReadSSE(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		want []SSEFrame
	}{
		{"one event", "id: 1\nevent: a\ndata: {\"x\":1}\n\n", []SSEFrame{{ID: "1", Event: "a", Data: []byte(`{"x":1}`)}}},
		{"comments and heartbeats skipped", ": ping\n\n: ping\nid: 2\ndata: x\n\n", []SSEFrame{{ID: "2", Data: []byte("x")}}},
		{"multi-line data", "data: a\ndata: b\n\n", []SSEFrame{{Data: []byte("a\nb")}}},
		{"no space after colon", "id:3\ndata:y\n\n", []SSEFrame{{ID: "3", Data: []byte("y")}}},
		{"unterminated last frame", "data: z", []SSEFrame{{Data: []byte("z")}}},
		{"empty", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []SSEFrame
			require.NoError(t, ReadSSE(strings.NewReader(tc.in), func(f SSEFrame) error { got = append(got, f); return nil }))
			require.Equal(t, tc.want, got)
		})
	}
}

func TestReadSSEStopsOnError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	n := 0
	err := ReadSSE(strings.NewReader("data: 1\n\ndata: 2\n\n"), func(SSEFrame) error { n++; return boom })
	require.ErrorIs(t, err, boom)
	require.Equal(t, 1, n)
}

func FuzzReadSSE(f *testing.F) {
	f.Add("id: 1\nevent: a\ndata: {\"event\":{}}\n\n")
	f.Add(": ping\n\ndata:\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		_ = ReadSSE(strings.NewReader(s), func(fr SSEFrame) error {
			_, _ = DecodeEventData(fr.Data)
			return nil
		})
	})
}

func TestDecodeEventData(t *testing.T) {
	t.Parallel()
	ev, err := DecodeEventData([]byte(`{"event":{"event_id":"evt_1","sequence":3,"type":"agentos.run.completed"}}`))
	require.NoError(t, err)
	require.Equal(t, int64(3), ev.Sequence)
	ev, err = DecodeEventData([]byte(`{"event_id":"evt_2","sequence":4,"type":"x"}`))
	require.NoError(t, err)
	require.Equal(t, "evt_2", ev.EventID)
	_, err = DecodeEventData([]byte(`not json`))
	require.Error(t, err)
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	in := `# HELP agentos_runs_total Runs.
# TYPE agentos_runs_total counter
agentos_runs_total{tenant="a",status="completed"} 2
agentos_runs_total{tenant="b",status="failed"} 3
go_goroutines 12
weird{label="with } brace"} 1
broken line
agentos_x_total{a="b"} NaNx
`
	m, err := ParseMetrics(strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, 5.0, m["agentos_runs_total"])
	require.Equal(t, 12.0, m["go_goroutines"])
	require.Equal(t, 1.0, m["weird"])
	require.NotContains(t, m, "agentos_x_total")
}

func FuzzParseMetrics(f *testing.F) {
	f.Add("agentos_runs_total{a=\"b\"} 1\n")
	f.Add("# x\nfoo 1e3 1700000000\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseMetrics(strings.NewReader(s))
	})
}

// A service's error answer comes back as the *errs.Error it encodes: the
// envelope's code, message and details, or, for a body without one (a
// proxy's 502), the code of the status; event streams and /metrics too.
func TestErrorAnswersAreErrsErrors(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/runs/run_x", "/v1/runs/run_x/events":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"run run_x not found","retryable":false,"details":{"run_id":"run_x"}},"correlation_id":"corr_fake"}`))
		case "/v1/agents":
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(429)
			_, _ = w.Write([]byte(`{"error":{"code":"rate_limited","message":"slow down","retryable":true,"details":{}}}`))
		default:
			w.WriteHeader(502)
			_, _ = w.Write([]byte("bad gateway"))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := &Client{BaseURL: srv.URL, Token: "t"}

	_, err := c.GetRun(ctx, "run_x")
	require.ErrorIs(t, err, errs.ErrNotFound)
	var e *errs.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, "run run_x not found", e.Message)
	require.Equal(t, "run_x", e.Details["run_id"])

	err = c.StreamEvents(ctx, "run_x", 0, func(store.Event) error { return nil })
	require.ErrorIs(t, err, errs.ErrNotFound)

	_, err = c.ListAgents(ctx)
	require.ErrorAs(t, err, &e)
	require.Equal(t, errs.RateLimited, e.Code)
	require.Equal(t, 3*time.Second, e.RetryAfter)

	_, err = c.GetTenant(ctx, "tnt_x")
	require.ErrorIs(t, err, errs.ErrUnavailable)
	require.ErrorAs(t, err, &e)
	require.Equal(t, srv.URL+" answered HTTP 502", e.Message)

	_, err = Metrics(ctx, nil, srv.URL)
	require.ErrorIs(t, err, errs.ErrUnavailable)
}
