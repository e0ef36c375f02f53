// Package tracing sets up OpenTelemetry traces for one service process:
// spans exported over OTLP/HTTP when an endpoint is configured
// (OTEL_EXPORTER_OTLP_ENDPOINT, resolved by internal/config), nothing at
// all when it is not. Instrumented code calls Start; while tracing is off
// Start returns the context unchanged and a no-op span, so the hot path
// pays one atomic load.
//
// The W3C traceparent stays the wire format between services (httpx
// continues it); this package only adds spans that a collector can see.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Options configure Setup (from config.Config).
type Options struct {
	// TracesURL is the full OTLP/HTTP traces URL (config resolves
	// OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces or
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); "" disables tracing.
	TracesURL string
	// Sampler is an OTEL_TRACES_SAMPLER name; SamplerArg its ratio.
	Sampler    string
	SamplerArg float64
	// Service names the process (service.name); Version and StackID are
	// resource attributes too.
	Service, Version, StackID string
	// ModelContent allows redacted prompt and completion text on model
	// spans (off by default: content never leaves the process otherwise).
	ModelContent bool
	// HTTPClient sends the spans; it comes from internal/outbound so that
	// it is bounded like every outbound client.
	HTTPClient *http.Client
}

var (
	enabled      atomic.Bool
	modelContent atomic.Bool
	tracer       atomic.Pointer[trace.Tracer]
)

// Enabled reports whether spans are being recorded in this process.
func Enabled() bool { return enabled.Load() }

// ModelContent reports whether model spans may carry redacted content.
func ModelContent() bool { return modelContent.Load() }

// Propagator is the W3C trace-context propagator every service uses.
var Propagator = propagation.TraceContext{}

// Setup installs the process's tracer provider and returns the function
// that flushes and stops it (call it when the service stops). With no
// endpoint it installs nothing and returns a no-op.
func Setup(ctx context.Context, o Options) (shutdown func(context.Context) error, err error) {
	if o.TracesURL == "" {
		return func(context.Context) error { return nil }, nil
	}
	u, err := url.Parse(o.TracesURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing: endpoint %q: want an http(s) URL", o.TracesURL)
	}
	sampler, err := newSampler(o.Sampler, o.SamplerArg)
	if err != nil {
		return nil, err
	}
	// Options are explicit so that the exporter reads no OTEL_* variable
	// behind internal/config's back.
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()),
		otlptracehttp.WithTimeout(10*time.Second), otlptracehttp.WithHTTPClient(o.HTTPClient))
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", o.Service),
		attribute.String("service.namespace", "agentos"),
		attribute.String("service.version", o.Version),
		attribute.String("agentos.stack_id", o.StackID))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sampler), sdktrace.WithResource(res))
	install(tp, o.ModelContent)
	return func(ctx context.Context) error {
		enabled.Store(false)
		return tp.Shutdown(ctx)
	}, nil
}

// Install makes tp the provider Start uses, for tests that record spans
// in memory.
func Install(tp trace.TracerProvider, content bool) { install(tp, content) }

// install makes tp the provider Start uses (tests install one with an
// in-memory exporter).
func install(tp trace.TracerProvider, content bool) {
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator)
	t := tp.Tracer("github.com/nexixai/agentos")
	tracer.Store(&t)
	modelContent.Store(content)
	enabled.Store(true)
}

// newSampler maps an OTEL_TRACES_SAMPLER name to a sampler.
func newSampler(name string, arg float64) (sdktrace.Sampler, error) {
	if arg < 0 || arg > 1 {
		return nil, fmt.Errorf("tracing: sampler ratio %v: want 0..1", arg)
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(arg), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "", "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(arg)), nil
	}
	return nil, errors.New("tracing: unknown sampler " + name)
}

var noopSpan trace.Span = noop.Span{}

// Start starts a span named name as a child of ctx's span (or of the
// remote parent ctx carries). With tracing off it returns ctx and a no-op
// span without allocating: callers guard costly attributes with
// span.IsRecording().
func Start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if !enabled.Load() {
		return ctx, noopSpan
	}
	return (*tracer.Load()).Start(ctx, name, trace.WithSpanKind(kind))
}

// Fail marks span as failed with err (nil: nothing).
func Fail(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// NoopSpan is the span Start returns while tracing is off.
var NoopSpan = noopSpan

// FailStatus marks span as failed with a message (no error value).
func FailStatus(span trace.Span, msg string) {
	if span.IsRecording() {
		span.SetStatus(codes.Error, msg)
	}
}

// Uninstall turns tracing off again (tests that installed a provider).
func Uninstall() { enabled.Store(false) }
