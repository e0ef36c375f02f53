package providers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/outbound"
)

// SetTraceparent sets the W3C traceparent header of an outgoing backend
// request: a child span of the trace in the request's context (a new trace
// outside a request), so the call shows up in the caller's trace.
func SetTraceparent(req *http.Request) {
	req.Header.Set("traceparent", httpx.TraceFrom(req.Context()).Child().Traceparent())
}

// DrainClose reads what is left of a response body (up to 64 KiB) and
// closes it, so the connection can be reused.
func DrainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

// StatusError maps a backend's non-2xx HTTP answer to an *errs.Error. msg is
// the backend's own error message (may be empty). 429, 5xx, 401/403 (a
// misconfigured key) and 404 (unknown model) are retryable on another
// backend; 408/504 are timeouts; other 4xx are invalid_request.
func StatusError(backend string, status int, msg string) *errs.Error {
	if msg == "" {
		msg = http.StatusText(status)
	}
	details := map[string]any{"backend": backend, "upstream_status": status}
	var code errs.Code
	switch {
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		code = errs.Timeout
	case status == http.StatusTooManyRequests || status >= 500 ||
		status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound:
		code = errs.DependencyUnavailable
	default:
		code = errs.InvalidRequest
	}
	return (&errs.Error{Code: code, Message: fmt.Sprintf("backend %s answered %d: %s", backend, status, truncate(msg, 300))}).WithDetails(details)
}

// TransportError maps a failed HTTP exchange (outbound.Error): the
// caller's deadline is timeout, the caller's leaving canceled (both wrap
// the context's error), anything else (refused, reset, DNS, a transport
// bound such as the response-header timeout) dependency_unavailable.
func TransportError(ctx context.Context, backend string, err error) error {
	return outbound.Error(ctx, "backend "+backend, err).WithDetails(map[string]any{"backend": backend})
}

// BadResponse is the error for a backend answer that cannot be understood.
func BadResponse(backend string, err error) *errs.Error {
	return (&errs.Error{Code: errs.DependencyUnavailable, Message: "backend " + backend + " sent a malformed response", Err: err}).
		WithDetails(map[string]any{"backend": backend})
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// SSEEvent is one server-sent event.
type SSEEvent struct {
	Event string
	Data  string
}

// ReadSSE reads server-sent events from r, calling fn for each complete
// event (data lines joined with "\n"). Comments are skipped. It returns
// fn's error, a read error, or nil at EOF.
func ReadSSE(r io.Reader, fn func(SSEEvent) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	var ev SSEEvent
	var data []string
	flush := func() error {
		if len(data) == 0 && ev.Event == "" {
			return nil
		}
		ev.Data = strings.Join(data, "\n")
		err := fn(ev)
		ev, data = SSEEvent{}, nil
		return err
	}
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case line == "":
			if err := flush(); err != nil {
				return err
			}
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				ev.Event = value
			case "data":
				data = append(data, value)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return flush()
}

// WireName turns a tool name into a function name every backend accepts
// (^[a-zA-Z0-9_-]{1,64}$): other characters become '_'.
func WireName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	if len(b) == 0 {
		return "tool"
	}
	return string(b)
}

// ProbeHealth GETs url (a backend's model list) with a 5 s timeout: any 2xx
// is healthy. setHeaders adds the backend's credentials.
func ProbeHealth(ctx context.Context, hc *http.Client, backend, url string, setHeaders func(*http.Request)) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "backend %s: bad base URL", backend)
	}
	SetTraceparent(req)
	setHeaders(req)
	resp, err := hc.Do(req)
	if err != nil {
		return TransportError(ctx, backend, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return StatusError(backend, resp.StatusCode, "")
	}
	return nil
}

// PostJSON POSTs body as JSON to url with the trace context and the
// backend's headers. A transport failure is returned mapped to the
// contract's codes; any HTTP answer is returned for the adapter to read
// (including non-2xx, whose error shape differs per backend).
func PostJSON(ctx context.Context, hc *http.Client, backend, url string, body any, accept string, setHeaders func(*http.Request)) (*http.Response, error) {
	buf, err := json.Marshal(body)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encode backend request")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(buf))
	if err != nil {
		return nil, errs.Wrap(errs.DependencyUnavailable, err, "backend %s: bad base URL", backend)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", accept)
	SetTraceparent(req)
	setHeaders(req)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, TransportError(ctx, backend, err)
	}
	return resp, nil
}
