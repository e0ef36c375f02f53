package agentorchestrator

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tracing"
)

// BenchmarkRunLifecycleTracing runs whole runs (admission over HTTP,
// scheduling, a model step, completion) from 8 concurrent clients, with
// tracing off (the default: no provider) and on (every span sampled and
// batched to an exporter that drops them), to show what spans cost and
// that tracing off costs nothing.
func BenchmarkRunLifecycleTracing(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("tracing=%v", on), func(b *testing.B) {
			if on {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				tracing.Install(tp, false)
				defer func() { tracing.Uninstall(); _ = tp.Shutdown(context.Background()) }()
			}
			bb := setup(b, bundleOpts{cached: true, tenantFn: func(tn *store.Tenant) {
				tn.Quotas.Runs.RunCreateQPS, tn.Quotas.Runs.RunCreateBurst, tn.Quotas.Runs.MaxConcurrentRuns = 1e9, 1e9, 1000
			}})
			var n atomic.Int64
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := bb.createRun("tnt_a", "agt_echo", map[string]any{"input": fmt.Sprintf("bench %d", n.Add(1))})
					for {
						run, err := bb.db.GetRun(context.Background(), "tnt_a", id)
						if err != nil {
							b.Fatal(err)
						}
						if run.Status.Terminal() {
							break
						}
						time.Sleep(500 * time.Microsecond)
					}
				}
			})
		})
	}
}
