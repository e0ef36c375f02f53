package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/tracing"
	"go.opentelemetry.io/otel/trace"
)

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// Chain applies mws so that the first one is the outermost.
func Chain(h http.Handler, mws ...Middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

type ctxKey int

const (
	keyCorrelation ctxKey = iota
	keyRequestID
	keyTrace
	keyLogAttrs
)

// Trace is the W3C trace context of a request.
type Trace struct {
	TraceID  string // 32 hex
	SpanID   string // 16 hex: this service's span
	ParentID string // 16 hex: the caller's span, "" if none
	Flags    string // 2 hex
	// live: SpanID is a span being recorded (tracing on), so downstream
	// calls name it as their parent rather than a made-up child.
	live bool
}

// Traceparent renders the header value for this span.
func (t Trace) Traceparent() string {
	return fmt.Sprintf("00-%s-%s-%s", t.TraceID, t.SpanID, t.Flags)
}

// Child returns a new span in the same trace (for a downstream call).
func (t Trace) Child() Trace {
	if t.live {
		return t
	}
	return Trace{TraceID: t.TraceID, SpanID: randHex(8), ParentID: t.SpanID, Flags: t.Flags}
}

var traceparentRE = regexp.MustCompile(`^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)

// ParseTraceparent continues an incoming traceparent with a new span, or
// starts a new trace when it is absent or invalid.
func ParseTraceparent(h string) Trace {
	m := traceparentRE.FindStringSubmatch(strings.TrimSpace(strings.ToLower(h)))
	if m == nil || m[1] == "ff" || m[2] == strings.Repeat("0", 32) || m[3] == strings.Repeat("0", 16) {
		return Trace{TraceID: randHex(16), SpanID: randHex(8), Flags: "01"}
	}
	return Trace{TraceID: m[2], SpanID: randHex(8), ParentID: m[3], Flags: m[4]}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CorrelationID returns the request's correlation id ("" outside a request).
func CorrelationID(ctx context.Context) string {
	s, _ := ctx.Value(keyCorrelation).(string)
	return s
}

// RequestID returns the request's id.
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(keyRequestID).(string)
	return s
}

// TraceFrom returns the request's trace context (a new trace outside a request).
func TraceFrom(ctx context.Context) Trace {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && !sc.IsRemote() {
		return fromSpan(sc, "")
	}
	if t, ok := ctx.Value(keyTrace).(Trace); ok {
		return t
	}
	return ParseTraceparent("")
}

// WithTrace returns ctx carrying t (for work started outside a request).
func WithTrace(ctx context.Context, t Trace) context.Context {
	return context.WithValue(ctx, keyTrace, t)
}

// WithCorrelationID returns ctx carrying id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, keyCorrelation, id)
}

var safeIDRE = regexp.MustCompile(`^[A-Za-z0-9_.:\-]{1,128}$`)

// IDs sets the correlation id (kept from X-Correlation-Id when well formed),
// the request id (kept from X-Request-Id when well formed, so that one id
// follows a request from the gateway to the service that answers it, else
// new) and the trace context, and echoes them as headers.
func IDs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		corr := r.Header.Get("X-Correlation-Id")
		if !safeIDRE.MatchString(corr) {
			corr = ids.New("corr_")
		}
		reqID := r.Header.Get("X-Request-Id")
		if !safeIDRE.MatchString(reqID) {
			reqID = ids.New("req_")
		}
		tr := ParseTraceparent(r.Header.Get("traceparent"))
		ctx := context.WithValue(r.Context(), keyCorrelation, corr)
		ctx = context.WithValue(ctx, keyRequestID, reqID)
		ctx = context.WithValue(ctx, keyLogAttrs, &logAttrs{})
		var rec *StatusRecorder
		var span trace.Span
		if tracing.Enabled() {
			ctx, tr, rec, span = serverSpan(w, r, ctx, tr)
			w = rec
		}
		ctx = context.WithValue(ctx, keyTrace, tr)
		h := w.Header()
		h.Set("X-Correlation-Id", corr)
		h.Set("X-Request-Id", reqID)
		h.Set("traceparent", tr.Traceparent())
		next.ServeHTTP(w, r.WithContext(ctx))
		if span != nil {
			endServerSpan(ctx, r, rec, span)
		}
	})
}

// LimitBody caps request bodies at n bytes.
func LimitBody(n int64) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Body != nil {
				r.Body = http.MaxBytesReader(w, r.Body, n)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Recover turns a panic into a logged 500 internal_error; the process keeps serving.
func Recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				slog.ErrorContext(r.Context(), "panic in handler", "panic", fmt.Sprint(v),
					"path", r.URL.Path, "stack", string(debug.Stack()), "correlation_id", CorrelationID(r.Context()))
				WriteError(w, r, errs.Wrap(errs.Internal, fmt.Errorf("panic: %v", v), "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type logAttrs struct{ tenantID, principalID, route string }

// SetLogTenant records the request's tenant and principal for the access log.
func SetLogTenant(ctx context.Context, tenantID, principalID string) {
	if a, ok := ctx.Value(keyLogAttrs).(*logAttrs); ok {
		a.tenantID, a.principalID = tenantID, principalID
	}
}

// Routed wraps a ServeMux so that the matched route pattern is known to the
// outer middleware (access log, metrics) through Route.
func Routed(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a, ok := r.Context().Value(keyLogAttrs).(*logAttrs); ok {
			_, pattern := mux.Handler(r)
			if pattern == "" {
				pattern = "unmatched"
			}
			a.route = pattern
		}
		mux.ServeHTTP(w, r)
	})
}

// Route returns the route pattern recorded by Routed ("" if none), for
// metric labels that must stay bounded.
func Route(ctx context.Context) string {
	if a, ok := ctx.Value(keyLogAttrs).(*logAttrs); ok {
		return a.route
	}
	return ""
}

// StatusRecorder captures the status and size written by a handler. It
// keeps http.Flusher working for SSE.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

// WriteHeader records the status.
func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.Bytes += int64(n)
	return n, err
}

// Flush forwards to the underlying writer when it can flush.
func (s *StatusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// AccessLog writes one JSON log line per request. Observe, if non-nil, is
// told each request's route pattern, status and duration (for metrics).
func AccessLog(logger *slog.Logger, observe func(r *http.Request, status int, d time.Duration)) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &StatusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			if rec.Status == 0 {
				rec.Status = http.StatusOK
			}
			d := time.Since(start)
			if observe != nil {
				observe(r, rec.Status, d)
			}
			attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.Status,
				"duration_ms", float64(d.Microseconds()) / 1000, "bytes", rec.Bytes,
				"correlation_id", CorrelationID(r.Context()), "request_id", RequestID(r.Context()),
				"trace_id", TraceFrom(r.Context()).TraceID}
			if a, ok := r.Context().Value(keyLogAttrs).(*logAttrs); ok && a.tenantID != "" {
				attrs = append(attrs, "tenant_id", a.tenantID, "principal_id", a.principalID)
			}
			level := slog.LevelInfo
			if rec.Status >= 500 {
				level = slog.LevelError
			}
			logger.Log(r.Context(), level, "http request", attrs...)
		})
	}
}

// Standard returns the middleware every service installs, outermost first.
func Standard(logger *slog.Logger, observe func(r *http.Request, status int, d time.Duration)) []Middleware {
	return []Middleware{IDs, AccessLog(logger, observe), Recover, LimitBody(MaxBodyBytes)}
}

// NotFoundHandler answers unknown routes with the envelope: 405
// method_not_allowed with an Allow header when one of muxes serves the
// path under another method, else 404 not_found.
func NotFoundHandler(muxes ...*http.ServeMux) http.Handler {
	return MethodCheck(H(func(w http.ResponseWriter, r *http.Request) error {
		return errs.E(errs.NotFound, "no route for %s %s", r.Method, r.URL.Path)
	}), muxes...)
}

// probeMethods are the methods tried when computing Allow.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// AllowedMethods returns the methods for which one of muxes has a route
// for r's path other than a catch-all "/" (the services register "/" for
// their envelope 404, which is why ServeMux's own 405 never fires).
func AllowedMethods(r *http.Request, muxes ...*http.ServeMux) []string {
	var allow []string
	for _, m := range probeMethods {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		for _, mux := range muxes {
			if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
				allow = append(allow, m)
				break
			}
		}
	}
	return allow
}

// MethodCheck answers 405 method_not_allowed, with Allow, when r's method
// is not served for its path but others are; otherwise it calls next.
// It runs before authentication, so a wrong method is reported as such
// whatever the credentials.
func MethodCheck(next http.Handler, muxes ...*http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The common case, a routed request, costs one lookup per mux; the
		// methods are probed only for a request no route matches.
		for _, mux := range muxes {
			if _, pattern := mux.Handler(r); pattern != "" && pattern != "/" {
				next.ServeHTTP(w, r)
				return
			}
		}
		allow := AllowedMethods(r, muxes...)
		if len(allow) == 0 || slices.Contains(allow, r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteError(w, r, errs.E(errs.MethodNotAllowed, "method %s not allowed for %s (allowed: %s)",
			r.Method, r.URL.Path, strings.Join(allow, ", ")).WithDetails(map[string]any{"allow": allow}))
	})
}

// Since is a helper for latency fields in milliseconds.
func Since(t time.Time) int64 { return time.Since(t).Milliseconds() }

// BodyDeadline bounds how long a request body may take to arrive: a
// client that sends its body byte by byte would otherwise hold a
// connection and a handler for ever. The read deadline is set when a
// request with a body starts and cleared once the body has been read to
// its end, so it never limits the response: a streamed response (SSE, chat
// completions with stream:true) outlives it, bounded per write instead. A
// body not received in time makes ReadBody fail, which answers 408.
// Install it outermost, on the server's own ResponseWriter.
func BodyDeadline(d time.Duration) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d > 0 && r.Body != nil && r.Body != http.NoBody {
				rc := http.NewResponseController(w)
				if rc.SetReadDeadline(time.Now().Add(d)) == nil {
					r.Body = &deadlineBody{ReadCloser: r.Body, clear: func() { _ = rc.SetReadDeadline(time.Time{}) }}
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// deadlineBody clears the read deadline when the body is fully read.
type deadlineBody struct {
	io.ReadCloser
	once  sync.Once
	clear func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.once.Do(b.clear)
	}
	return n, err
}
