package agentorchestrator

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/nexixai/agentos/internal/store"
)

// BenchmarkCreateRunHTTP measures admission over HTTP (auth, validation,
// rate limit, the admission transaction, the response) from 50 concurrent
// clients; the scheduler is not started, so only admission is measured.
func BenchmarkCreateRunHTTP(b *testing.B) {
	bb := setup(b, bundleOpts{cached: true, noExec: true, tenantFn: func(tn *store.Tenant) {
		tn.Quotas.Runs.RunCreateQPS, tn.Quotas.Runs.RunCreateBurst, tn.Quotas.Runs.MaxConcurrentRuns = 1e9, 1e9, 1
	}})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	var n atomic.Int64
	b.SetParallelism(25)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := fmt.Sprintf(`{"input":"bench %d"}`, n.Add(1))
			req, _ := http.NewRequest("POST", bb.http.URL+"/v1/agents/agt_echo/runs", bytes.NewBufferString(body))
			req.Header.Set("X-Tenant-Id", "tnt_a")
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 201 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkCreateRunHTTPSerial is one client creating runs back to back:
// the admission latency without batching.
func BenchmarkCreateRunHTTPSerial(b *testing.B) {
	bb := setup(b, bundleOpts{cached: true, noExec: true, tenantFn: func(tn *store.Tenant) {
		tn.Quotas.Runs.RunCreateQPS, tn.Quotas.Runs.RunCreateBurst, tn.Quotas.Runs.MaxConcurrentRuns = 1e9, 1e9, 1
	}})
	client := &http.Client{}
	i := 0
	for b.Loop() {
		i++
		req, _ := http.NewRequest("POST", bb.http.URL+"/v1/agents/agt_echo/runs", bytes.NewBufferString(fmt.Sprintf(`{"input":"bench %d"}`, i)))
		req.Header.Set("X-Tenant-Id", "tnt_a")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
