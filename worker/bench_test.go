package worker_test

import (
	"context"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
)

// BenchmarkWorkerHop measures one tool.echo call placed on a worker
// (enqueue on JetStream, a worker pulls, runs, reports back over an
// authenticated embedded NATS on loopback) against the same call run in
// process; it reports the p50 of each and the hop's added p50.
//
//	go test -run '^$' -bench WorkerHop -benchtime 2000x ./worker/
func BenchmarkWorkerHop(b *testing.B) {
	bb := setupB(b)
	gpu := map[string]string{"gpu": "a100"}
	ctx := context.Background()
	in := json.RawMessage(`{"text":"hi"}`)

	local := make([]time.Duration, 0, b.N)
	remote := make([]time.Duration, 0, b.N)
	echo := builtin.Echo()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := tools.InvokeTool(ctx, echo, tools.Call{TenantID: "ten_a", Input: in}, time.Second); err != nil {
			b.Fatal(err)
		}
		local = append(local, time.Since(start))
		start = time.Now()
		out, err := bb.dispatch.Run(ctx, call(builtin.EchoID, gpu, string(in), true, 10*time.Second))
		if err != nil || out.Err != nil {
			b.Fatal(err, out.Err)
		}
		remote = append(remote, time.Since(start))
	}
	b.StopTimer()
	p50 := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	lp, rp := p50(local), p50(remote)
	b.ReportMetric(float64(lp.Microseconds()), "inproc-p50-µs")
	b.ReportMetric(float64(rp.Microseconds()), "worker-p50-µs")
	b.ReportMetric(float64((rp - lp).Microseconds()), "hop-added-p50-µs")
	b.ReportMetric(float64(remote[len(remote)*99/100].Microseconds()), "worker-p99-µs")
}

// BenchmarkWorkerThroughput measures tasks per second through one worker
// (concurrency 16) with 32 callers placing tool.echo on it at once, over
// the same authenticated embedded NATS; each task is enqueued on
// JetStream (an fsync), pulled, acked (another), run and reported.
//
//	go test -run '^$' -bench WorkerThroughput -benchtime 5000x ./worker/
func BenchmarkWorkerThroughput(b *testing.B) {
	bb := setupTB(b)
	bb.concurrency = 16
	bb.startWorkerTB(b, "w-bench", map[string]string{"gpu": "a100"})
	gpu := map[string]string{"gpu": "a100"}
	in := `{"text":"hi"}`
	b.SetParallelism(16) // × GOMAXPROCS callers
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			out, err := bb.dispatch.Run(context.Background(), call(builtin.EchoID, gpu, in, true, 30*time.Second))
			if err != nil || out.Err != nil {
				b.Error(err, out.Err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}

// setupB is setup for a benchmark: one worker labelled gpu=a100.
func setupB(b *testing.B) *bundle {
	bundle := setupTB(b)
	bundle.startWorkerTB(b, "w-bench", map[string]string{"gpu": "a100"})
	require.NotNil(b, bundle.dispatch)
	return bundle
}
