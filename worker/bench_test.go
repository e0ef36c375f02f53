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

// setupB is setup for a benchmark: one worker labelled gpu=a100.
func setupB(b *testing.B) *bundle {
	bundle := setupTB(b)
	bundle.startWorkerTB(b, "w-bench", map[string]string{"gpu": "a100"})
	require.NotNil(b, bundle.dispatch)
	return bundle
}
