package httpx

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nexixai/agentos/internal/tracing"
)

// The request's Trace and the OpenTelemetry span are one thing seen two
// ways: while tracing is on, the server span of a request takes the trace
// and span ids the Trace carries, and TraceFrom reads them back from the
// active span, so that every traceparent sent downstream names a span the
// collector receives. While tracing is off nothing here runs but one
// atomic load per request.

// spanContext is t as an OpenTelemetry remote parent.
func (t Trace) spanContext() trace.SpanContext {
	tid, err1 := trace.TraceIDFromHex(t.TraceID)
	sid, err2 := trace.SpanIDFromHex(t.SpanID)
	if err1 != nil || err2 != nil {
		return trace.SpanContext{}
	}
	flags := trace.TraceFlags(0)
	if t.Flags == "01" || t.Flags == "03" {
		flags = trace.FlagsSampled
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})
}

// fromSpan is the Trace of a live span.
func fromSpan(sc trace.SpanContext, parentID string) Trace {
	return Trace{TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(), ParentID: parentID,
		Flags: sc.TraceFlags().String(), live: true}
}

// StartSpan starts a span (run, step, tool call...) as a child of ctx's
// span, or, in work that started outside a request (a leased run), of
// the Trace ctx carries. With tracing off it returns ctx and a no-op span
// without allocating.
func StartSpan(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !tracing.Enabled() {
		return ctx, tracing.NoopSpan
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		if t, ok := ctx.Value(keyTrace).(Trace); ok {
			ctx = trace.ContextWithRemoteSpanContext(ctx, t.spanContext())
		}
	}
	ctx, span := tracing.Start(ctx, name, kind)
	if len(attrs) > 0 {
		span.SetAttributes(attrs...)
	}
	return ctx, span
}

// serverSpan wraps a request in a server span that continues tr (the
// parsed incoming traceparent) and returns the request's Trace rebased
// on it.
func serverSpan(w http.ResponseWriter, r *http.Request, ctx context.Context, tr Trace) (context.Context, Trace, *StatusRecorder, trace.Span) {
	if tr.ParentID != "" {
		ctx = trace.ContextWithRemoteSpanContext(ctx, Trace{TraceID: tr.TraceID, SpanID: tr.ParentID, Flags: tr.Flags}.spanContext())
	}
	ctx, span := tracing.Start(ctx, r.Method, trace.SpanKindServer)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("http.request.method", r.Method),
			attribute.String("url.path", r.URL.Path))
	}
	return ctx, fromSpan(span.SpanContext(), tr.ParentID), &StatusRecorder{ResponseWriter: w}, span
}

// endServerSpan names the span after the matched route and records the
// status.
func endServerSpan(ctx context.Context, r *http.Request, rec *StatusRecorder, span trace.Span) {
	if span.IsRecording() {
		if route := Route(ctx); route != "" {
			span.SetName(route)
			span.SetAttributes(attribute.String("http.route", route))
		}
		status := rec.Status
		if status == 0 {
			status = http.StatusOK
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			tracing.FailStatus(span, http.StatusText(status))
		}
	}
	span.End()
}
