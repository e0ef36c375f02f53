package conformance

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// loadMini loads the harness's own small test spec.
func loadMini(t *testing.T) *Spec {
	t.Helper()
	s, err := LoadSpecFile(filepath.Join("testdata", "mini.yaml"))
	require.NoError(t, err)
	return s
}

// recorder is a testing.TB that records Errorf calls instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// fakeResponse builds a response and the request it answers.
func fakeResponse(method, path string, status int, header map[string]string) (*http.Request, *http.Response) {
	req := httptest.NewRequest(method, "http://127.0.0.1:12345"+path, nil)
	resp := &http.Response{StatusCode: status, Header: http.Header{}}
	for k, v := range header {
		resp.Header.Set(k, v)
	}
	return req, resp
}

func TestLoadSpecFileRejectsInvalidDocument(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "openapi.yaml")
	// A response without the required description is invalid OpenAPI 3.0.
	require.NoError(t, os.WriteFile(p, []byte(`openapi: 3.0.3
info: {title: x, version: "1"}
paths:
  /x:
    get:
      responses:
        "200": {content: {application/json: {schema: {type: object}}}}
`), 0o600))
	_, err := LoadSpecFile(p)
	require.Error(t, err)
	require.Contains(t, err.Error(), "invalid OpenAPI document")
}

func TestRepoRootFindsGoMod(t *testing.T) {
	t.Parallel()
	root := RepoRoot(t)
	_, err := os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
}

func TestCheckResponse(t *testing.T) {
	t.Parallel()
	s := loadMini(t)
	okHeaders := map[string]string{"Content-Type": "application/json", "X-Correlation-Id": "corr_1"}
	cases := []struct {
		name    string
		method  string
		path    string
		status  int
		header  map[string]string
		body    string
		wantErr string // "" means valid
	}{
		{"valid run", "GET", "/v1/runs/run_1", 200, okHeaders,
			`{"run":{"run_id":"run_1","status":"queued","completed_at":null,"extra":1},"correlation_id":"corr_1"}`, ""},
		{"charset in content type", "GET", "/v1/runs/run_1", 200,
			map[string]string{"Content-Type": "application/json; charset=utf-8", "X-Correlation-Id": "corr_1"},
			`{"run":{"run_id":"run_1","status":"queued","completed_at":"2026-01-02T03:04:05Z"}}`, ""},
		{"missing required field", "GET", "/v1/runs/run_1", 200, okHeaders,
			`{"run":{"run_id":"run_1","completed_at":null}}`, "status"},
		{"value outside enum", "GET", "/v1/runs/run_1", 200, okHeaders,
			`{"run":{"run_id":"run_1","status":"exploded","completed_at":null}}`, "exploded"},
		{"null where not nullable", "GET", "/v1/runs/run_1", 200, okHeaders,
			`{"run":{"run_id":null,"status":"queued","completed_at":null}}`, "run_id"},
		{"bad date-time", "GET", "/v1/runs/run_1", 200, okHeaders,
			`{"run":{"run_id":"r","status":"queued","completed_at":"yesterday"}}`, "completed_at"},
		{"undocumented status", "GET", "/v1/runs/run_1", 418, okHeaders, `{}`, "not documented"},
		{"missing required header", "GET", "/v1/runs/run_1", 200,
			map[string]string{"Content-Type": "application/json"},
			`{"run":{"run_id":"r","status":"queued","completed_at":null}}`, "X-Correlation-Id"},
		{"header breaks its pattern", "GET", "/v1/runs/run_1", 200,
			map[string]string{"Content-Type": "application/json", "X-Correlation-Id": "nope"},
			`{"run":{"run_id":"r","status":"queued","completed_at":null}}`, "X-Correlation-Id"},
		{"undocumented content type", "GET", "/v1/runs/run_1", 200,
			map[string]string{"Content-Type": "text/html", "X-Correlation-Id": "corr_1"}, `<p>`, "text/html"},
		{"not JSON", "GET", "/v1/runs/run_1", 200, okHeaders, `{"run":`, "not JSON"},
		{"error envelope", "GET", "/v1/runs/run_x", 404, okHeaders, `{"error":{"code":"not_found"}}`, ""},
		{"wrong error code", "GET", "/v1/runs/run_x", 404, okHeaders, `{"error":{"code":"gone"}}`, "gone"},
		{"unknown path", "GET", "/v1/nothing", 200, okHeaders, `{}`, "no such operation"},
		{"method not allowed", "DELETE", "/v1/runs/run_1", 200, okHeaders, `{}`, "no such operation"},
		// Colon paths: the cancel operation must be chosen, not GET-less {run_id}.
		{"colon path routes to cancel", "POST", "/v1/runs/run_1:cancel", 200, okHeaders, `{"canceled":true}`, ""},
		{"colon path checked against cancel schema", "POST", "/v1/runs/run_1:cancel", 200, okHeaders,
			`{"run":{"run_id":"r","status":"canceled","completed_at":null}}`, "canceled"},
		{"colon in a fixed segment", "POST", "/v1/models:invoke", 200, okHeaders, `{"invoked":true}`, ""},
		{"colon path, wrong body", "POST", "/v1/models:invoke", 200, okHeaders, `{"invoked":"yes"}`, "invoked"},
		{"SSE ok", "GET", "/v1/runs/run_1/events", 200,
			map[string]string{"Content-Type": "text/event-stream", "X-Correlation-Id": "corr_1"}, goodSSE, ""},
		{"SSE bad frame", "GET", "/v1/runs/run_1/events", 200,
			map[string]string{"Content-Type": "text/event-stream", "X-Correlation-Id": "corr_1"},
			strings.Replace(goodSSE, "id: 2", "id: 7", 1), "sequence 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, resp := fakeResponse(tc.method, tc.path, tc.status, tc.header)
			err := s.CheckResponse(req, resp, []byte(tc.body))
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

// TestValidateResponseAgainstLiveServer proves the t-reporting path fails on
// a deliberately wrong response from a real server and passes on a right one.
func TestValidateResponseAgainstLiveServer(t *testing.T) {
	t.Parallel()
	s := loadMini(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Correlation-Id", "corr_live")
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/runs/run_good":
			_, _ = w.Write([]byte(`{"run":{"run_id":"run_good","status":"queued","completed_at":null}}`))
		case "/v1/runs/run_bad":
			// Wrong on purpose: status is a number, run_id is missing.
			_, _ = w.Write([]byte(`{"run":{"status":3,"completed_at":null}}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found"}}`))
		}
	}))
	t.Cleanup(srv.Close)

	rec := &recorder{TB: t}
	resp, body := s.Do(rec, srv.Client(), "GET", srv.URL+"/v1/runs/run_bad", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, body)
	require.Len(t, rec.errors, 1)
	require.Contains(t, rec.errors[0], "run_id")
	require.Contains(t, rec.errors[0], "status")

	rec = &recorder{TB: t}
	c := &Client{Spec: s, HTTP: srv.Client(), BaseURL: srv.URL + "/", Headers: map[string]string{"X-Tenant-Id": "tnt_demo"}}
	resp, _ = c.Do(rec, "GET", "/v1/runs/run_good", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, rec.errors)
	resp, _ = c.Do(rec, "GET", "/v1/runs/run_missing", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Empty(t, rec.errors)
}

func TestClientSendsHeadersAndJSON(t *testing.T) {
	t.Parallel()
	s := loadMini(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Correlation-Id", "corr_1")
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("X-Tenant-Id") != "tnt_b" || r.Header.Get("Content-Type") != "application/json" {
			_, _ = w.Write([]byte(`{"invoked":false}`))
			return
		}
		_, _ = w.Write([]byte(`{"invoked":true}`))
	}))
	t.Cleanup(srv.Close)
	c := &Client{Spec: s, BaseURL: srv.URL, Headers: map[string]string{"X-Tenant-Id": "tnt_a"}}
	_, body := c.Do(t, "POST", "/v1/models:invoke", map[string]any{"n": 1}, map[string]string{"X-Tenant-Id": "tnt_b"})
	require.Equal(t, true, JSON(t, body)["invoked"])
}

func TestCheckRequest(t *testing.T) {
	t.Parallel()
	s := loadMini(t)
	req := httptest.NewRequest("POST", "/v1/models:invoke", nil)
	req.Header.Set("Content-Type", "application/json")
	require.NoError(t, s.CheckRequest(req, []byte(`{"n":3}`)))
	err := s.CheckRequest(req, []byte(`{"n":"three"}`))
	require.Error(t, err)
	require.Contains(t, err.Error(), "n")

	q := httptest.NewRequest("GET", "/v1/runs/run_1/events?after_sequence=-1", nil)
	require.Error(t, s.CheckRequest(q, nil))
}

const goodSSE = `: ping

id: 1
event: agentos.run.created
data: {"event":{"event_id":"evt_1","sequence":1,"type":"agentos.run.created","tenant_id":"tnt_a","run_id":"run_1","time":"2026-01-02T03:04:05Z"}}

: ping
id: 2
event: agentos.run.completed
data: {"event":{"event_id":"evt_2","sequence":2,"type":"agentos.run.completed","tenant_id":"tnt_a","run_id":"run_1","time":"2026-01-02T03:04:06Z"}}

`

func sseFrame(seq int, typ, run string) string {
	return fmt.Sprintf("id: %d\nevent: %s\ndata: {\"event\":{\"event_id\":\"evt_%d\",\"sequence\":%d,\"type\":%q,\"tenant_id\":\"tnt_a\",\"run_id\":%q,\"time\":\"2026-01-02T03:04:05Z\"}}\n\n",
		seq, typ, seq, seq, typ, run)
}

func TestCheckSSE(t *testing.T) {
	t.Parallel()
	s := loadMini(t)
	created, step, done := "agentos.run.created", "agentos.run.step.started", "agentos.run.completed"
	cases := []struct {
		name    string
		target  string
		header  map[string]string
		body    string
		wantErr string
		wantN   int
	}{
		{"good", "/v1/runs/run_1/events", nil, goodSSE, "", 2},
		{"CRLF line ends", "/v1/runs/run_1/events", nil, strings.ReplaceAll(goodSSE, "\n", "\r\n"), "", 2},
		{"empty stream", "/v1/runs/run_1/events", nil, "", "", 0},
		{"resume by query", "/v1/runs/run_1/events?after_sequence=1", nil, sseFrame(2, step, "run_1"), "", 1},
		{"resume by Last-Event-ID", "/v1/runs/run_1/events", map[string]string{"Last-Event-ID": "1"}, sseFrame(2, step, "run_1"), "", 1},
		{"replays before resume point", "/v1/runs/run_1/events?after_sequence=2", nil, sseFrame(2, step, "run_1"), "resume point", 1},
		{"gap", "/v1/runs/run_1/events", nil, sseFrame(1, created, "run_1") + sseFrame(3, step, "run_1"), "gap", 2},
		{"duplicate", "/v1/runs/run_1/events", nil, sseFrame(1, created, "run_1") + sseFrame(1, created, "run_1"), "duplicate", 2},
		{"two runs", "/v1/runs/run_1/events", nil, sseFrame(1, created, "run_1") + sseFrame(2, step, "run_2"), "stream of run", 2},
		{"after terminal", "/v1/runs/run_1/events", nil, sseFrame(1, done, "run_1") + sseFrame(2, step, "run_1"), "terminal", 2},
		{"event name differs", "/v1/runs/run_1/events", nil,
			strings.Replace(sseFrame(1, created, "run_1"), "event: "+created, "event: other", 1), "differs", 1},
		{"missing id", "/v1/runs/run_1/events", nil,
			strings.Replace(sseFrame(1, created, "run_1"), "id: 1\n", "", 1), "no id", 1},
		{"data not wrapped", "/v1/runs/run_1/events", nil,
			"id: 1\nevent: x\ndata: {\"sequence\":1}\n\n", "SSEEventData", 0},
		{"data not JSON", "/v1/runs/run_1/events", nil, "id: 1\nevent: x\ndata: {\n\n", "not JSON", 0},
		{"unterminated frame", "/v1/runs/run_1/events", nil, strings.TrimSuffix(sseFrame(1, created, "run_1"), "\n"), "not terminated", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest("GET", tc.target, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			events, err := s.CheckSSE(req, []byte(tc.body))
			if tc.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				require.Contains(t, err.Error(), tc.wantErr)
			}
			require.Len(t, events, tc.wantN)
		})
	}
}

func TestValidateSSEReports(t *testing.T) {
	t.Parallel()
	s := loadMini(t)
	rec := &recorder{TB: t}
	events := s.ValidateSSE(rec, nil, []byte(goodSSE))
	require.Empty(t, rec.errors)
	require.Len(t, events, 2)
	require.Equal(t, int64(2), events[1].Sequence)
	require.Equal(t, "agentos.run.completed", events[1].Type)

	s.ValidateSSE(rec, nil, []byte(strings.Replace(goodSSE, "id: 2", "id: 3", 1)))
	require.Len(t, rec.errors, 1)
}

func TestParseSSE(t *testing.T) {
	t.Parallel()
	frames, err := ParseSSE([]byte(": hi\nid: 4\nevent: e\ndata: a\ndata:b\nretry: 10\n\n\n\nid:5\ndata\n\n"))
	require.NoError(t, err)
	require.Equal(t, []SSEFrame{
		{ID: "4", HasID: true, Event: "e", Data: "a\nb", Retry: "10", Line: 2},
		{ID: "5", HasID: true, Data: "", Line: 10},
	}, frames)

	for name, in := range map[string]string{
		"no data":       "id: 1\n\n",
		"unknown field": "id: 1\nfoo: x\ndata: y\n\n",
		"no newline":    "data: x",
		"NUL in id":     "id: 1\x00\ndata: x\n\n",
	} {
		_, err := ParseSSE([]byte(in))
		require.Error(t, err, name)
	}
}

func FuzzParseSSE(f *testing.F) {
	f.Add([]byte(goodSSE))
	f.Add([]byte("data: x\r\n\r\n"))
	f.Add([]byte(": c\rdata:\r\r"))
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, err := ParseSSE(b)
		if err != nil {
			return
		}
		for _, fr := range frames {
			if fr.Line < 1 {
				t.Fatalf("frame without a line number: %+v", fr)
			}
			if strings.ContainsAny(fr.ID+fr.Event, "\r\n") {
				t.Fatalf("field value contains a line break: %+v", fr)
			}
		}
	})
}

func TestCheckExamples(t *testing.T) {
	t.Parallel()
	s := loadMini(t)
	write := func(t *testing.T, dir string, files map[string]string) {
		t.Helper()
		for name, content := range files {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
		}
	}
	goodIndex := `examples:
  - {file: run.response.json, path: "/v1/runs/{run_id}", method: GET, status: 200}
  - {file: invoke.request.json, path: "/v1/models:invoke", method: POST, request: true}
  - {file: events.sse, path: "/v1/runs/{run_id}/events", method: GET, status: 200, content_type: text/event-stream}
  - {file: event.json, schema: Event}
`
	good := map[string]string{
		"index.yaml":          goodIndex,
		"run.response.json":   `{"run":{"run_id":"r","status":"queued","completed_at":null}}`,
		"invoke.request.json": `{"n":1}`,
		"events.sse":          goodSSE,
		"event.json":          `{"event_id":"e","sequence":1,"type":"t","tenant_id":"x","run_id":"r","time":"2026-01-02T03:04:05Z"}`,
		"README.md":           "not an example",
	}

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		write(t, dir, good)
		require.NoError(t, s.CheckExamples(dir))
	})
	cases := map[string]struct {
		files   map[string]string
		wantErr string
	}{
		"unmapped file":      {map[string]string{"extra.json": `{}`}, "extra.json: not mapped"},
		"example is wrong":   {map[string]string{"invoke.request.json": `{"n":"x"}`}, "invoke.request.json"},
		"example not JSON":   {map[string]string{"event.json": `{`}, "not valid JSON"},
		"missing file":       {map[string]string{"index.yaml": goodIndex + "  - {file: gone.json, schema: Event}\n"}, "gone.json"},
		"unknown status":     {map[string]string{"index.yaml": goodIndex + "  - {file: x.json, path: \"/v1/runs/{run_id}\", method: GET, status: 500}\n", "x.json": `{}`}, "no 500 response"},
		"unknown path":       {map[string]string{"index.yaml": goodIndex + "  - {file: x.json, path: /v1/x, method: GET, status: 200}\n", "x.json": `{}`}, "not in the spec"},
		"two selectors":      {map[string]string{"index.yaml": goodIndex + "  - {file: x.json, schema: Event, status: 200}\n", "x.json": `{}`}, "exactly one"},
		"unknown index key":  {map[string]string{"index.yaml": goodIndex + "  - {file: x.json, shema: Event}\n", "x.json": `{}`}, "shema"},
		"mapped twice":       {map[string]string{"index.yaml": goodIndex + "  - {file: event.json, schema: Event}\n"}, "mapped twice"},
		"bad sse example":    {map[string]string{"events.sse": "data: x\n\n"}, "events.sse"},
		"unknown schema":     {map[string]string{"index.yaml": goodIndex + "  - {file: x.json, schema: Nope}\n", "x.json": `{}`}, "no component schema"},
		"no request body op": {map[string]string{"index.yaml": goodIndex + "  - {file: x.json, path: \"/v1/runs/{run_id}\", method: GET, request: true}\n", "x.json": `{}`}, "no request body"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			write(t, dir, good)
			write(t, dir, tc.files)
			err := s.CheckExamples(dir)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}
