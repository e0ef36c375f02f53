package httpx

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/nexixai/agentos/internal/tracing"
)

// TestServerSpanJoinsTraceparent: with tracing on, a request's server span
// continues the caller's traceparent, the traceparent it sends downstream
// and answers with names that span, child spans nest under it, and log
// lines carry its ids. Not parallel: it installs the process's provider.
func TestServerSpanJoinsTraceparent(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tracing.Install(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)), false)
	defer tracing.Uninstall()

	var logs bytes.Buffer
	log := slog.New(TraceLogHandler(slog.NewJSONHandler(&logs, nil)))
	var downstream string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		ctx, span := StartSpan(r.Context(), "work", trace.SpanKindInternal)
		downstream = TraceFrom(ctx).Child().Traceparent()
		log.InfoContext(ctx, "working")
		span.End()
		w.WriteHeader(http.StatusAccepted)
	})
	h := Chain(Routed(mux), IDs)
	const tid, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req := httptest.NewRequest("POST", "/v1/things/1", strings.NewReader("{}"))
	req.Header.Set("traceparent", "00-"+tid+"-"+caller+"-01")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	work, server := spans[0], spans[1]
	require.Equal(t, "POST /v1/things/{id}", server.Name)
	require.Equal(t, trace.SpanKindServer, server.SpanKind)
	require.Equal(t, tid, server.SpanContext.TraceID().String())
	require.Equal(t, caller, server.Parent.SpanID().String())
	require.Equal(t, server.SpanContext.SpanID(), work.Parent.SpanID())
	require.Equal(t, "00-"+tid+"-"+server.SpanContext.SpanID().String()+"-01", rec.Header().Get("traceparent"))
	require.Equal(t, "00-"+tid+"-"+work.SpanContext.SpanID().String()+"-01", downstream)
	var line map[string]any
	require.NoError(t, json.Unmarshal(logs.Bytes(), &line))
	require.Equal(t, tid, line["trace_id"])
	require.Equal(t, work.SpanContext.SpanID().String(), line["span_id"])
}

// TestTracingOffRecordsNothing: with no provider installed, the
// middleware keeps the traceparent behaviour it always had (a fresh span
// id, the caller's trace) and StartSpan hands back ctx unchanged.
func TestTracingOffRecordsNothing(t *testing.T) {
	var got Trace
	h := IDs(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := StartSpan(r.Context(), "work", trace.SpanKindInternal)
		require.False(t, span.IsRecording())
		require.Equal(t, r.Context(), ctx)
		got = TraceFrom(ctx)
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", got.TraceID)
	require.Equal(t, "00f067aa0ba902b7", got.ParentID)
	require.NotEqual(t, got.SpanID, got.Child().SpanID)
}

func BenchmarkStartSpanOff(b *testing.B) {
	ctx := WithTrace(b.Context(), ParseTraceparent(""))
	b.ReportAllocs()
	for b.Loop() {
		_, span := StartSpan(ctx, "work", trace.SpanKindInternal)
		span.End()
	}
}
