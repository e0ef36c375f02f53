package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// jaegerConfig is Jaeger v2's all-in-one setup (memory storage, OTLP/HTTP
// receiver, query API) on free loopback ports, its own telemetry off.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// startJaeger runs the Jaeger v2 binary named by AGENTOS_TEST_JAEGER and
// returns its OTLP/HTTP base URL and query API URL.
func startJaeger(t *testing.T) (otlpURL, queryURL string) {
	bin := os.Getenv("AGENTOS_TEST_JAEGER")
	if bin == "" {
		t.Skip("AGENTOS_TEST_JAEGER (a Jaeger v2 binary) is not set; .ci/run builds it")
	}
	otlp, query, grpc := testnode.FreeAddr(t), testnode.FreeAddr(t), testnode.FreeAddr(t)
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, query, grpc, otlp), 0o600))
	var out bytes.Buffer
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("jaeger output:\n%s", out.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + query + "/api/services")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 200*time.Millisecond, "jaeger query API did not come up")
	return "http://" + otlp, "http://" + query
}

type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	ProcessID     string `json:"processID"`
	Tags          []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

func (s jaegerSpan) tag(key string) (any, bool) {
	for _, t := range s.Tags {
		if t.Key == key {
			return t.Value, true
		}
	}
	return nil, false
}

type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// TestTraceInJaeger: one sample-agent run against a node exporting to a
// real Jaeger v2 is one trace with spans from the orchestrator and
// model-policy, model spans carry the GenAI attributes, and the prompt
// (with an e-mail address in it) is on no span unless content capture is
// on, and then only redacted.
func TestTraceInJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	otlpURL, queryURL := startJaeger(t)
	for _, capture := range []bool{false, true} {
		t.Run(fmt.Sprintf("capture_content=%v", capture), func(t *testing.T) {
			n := testnode.Start(t, testnode.Options{Env: []string{
				"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlpURL,
				fmt.Sprintf("AGENTOS_OTEL_CAPTURE_CONTENT=%v", capture),
			}})
			const email = "jane.doe.trace@example.com"
			prompt := "please remember my address " + email + " for the trace test"
			body, _ := json.Marshal(map[string]any{"input": map[string]any{"type": "text", "text": prompt}})
			req, _ := http.NewRequest("POST", n.URL("orchestrator")+"/v1/agents/agt_sample_echo_v1/runs", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Tenant-Id", "tnt_demo")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Less(t, resp.StatusCode, 300, string(raw))
			traceID := strings.Split(resp.Header.Get("traceparent"), "-")[1]
			var created struct {
				Run struct {
					RunID string `json:"run_id"`
				} `json:"run"`
			}
			require.NoError(t, json.Unmarshal(raw, &created), string(raw))
			waitRunDone(t, n, created.Run.RunID)

			var tr jaegerTrace
			require.Eventually(t, func() bool {
				tr = fetchTrace(t, queryURL, traceID)
				return hasModelPolicyInvoke(tr)
			}, 30*time.Second, 250*time.Millisecond, "trace %s never had model-policy's spans", traceID)

			services := map[string]bool{}
			for _, p := range tr.Processes {
				services[p.ServiceName] = true
			}
			require.True(t, services["agent-orchestrator"], "services: %v", services)
			require.True(t, services["model-policy"], "services: %v", services)

			var model []jaegerSpan
			for _, s := range tr.Spans {
				if op, ok := s.tag("gen_ai.operation.name"); ok && op == "chat" {
					model = append(model, s)
				}
			}
			require.NotEmpty(t, model)
			for _, s := range model {
				for _, k := range []string{"gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"} {
					_, ok := s.tag(k)
					require.True(t, ok, "span %s lacks %s", s.OperationName, k)
				}
			}
			all, _ := json.Marshal(tr)
			require.NotContains(t, string(all), email, "the e-mail address reached a span")
			if !capture {
				require.NotContains(t, string(all), "please remember my address", "prompt text on a span without the opt-in")
			}
			sawContent := strings.Contains(string(all), "gen_ai.input.messages")
			require.Equal(t, capture, sawContent, "content on spans must follow AGENTOS_OTEL_CAPTURE_CONTENT")
			if capture {
				require.Contains(t, string(all), "for the trace test", "the redacted prompt is on the span")
			}
		})
	}
}

func hasModelPolicyInvoke(tr jaegerTrace) bool {
	for _, s := range tr.Spans {
		if tr.Processes[s.ProcessID].ServiceName == "model-policy" {
			if _, ok := s.tag("gen_ai.usage.output_tokens"); ok {
				return true
			}
		}
	}
	return false
}

func fetchTrace(t *testing.T, queryURL, traceID string) jaegerTrace {
	resp, err := http.Get(queryURL + "/api/traces/" + traceID)
	if err != nil {
		return jaegerTrace{}
	}
	defer resp.Body.Close()
	var out struct {
		Data []jaegerTrace `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || len(out.Data) != 1 {
		return jaegerTrace{}
	}
	return out.Data[0]
}

func waitRunDone(t *testing.T, n *testnode.Node, runID string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", n.URL("orchestrator")+"/v1/runs/"+runID, nil)
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var got struct {
				Run struct {
					Status string `json:"status"`
				} `json:"run"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if got.Run.Status == "completed" {
				return
			}
			require.NotContains(t, []string{"failed", "canceled", "timed_out"}, got.Run.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("run %s did not complete", runID)
}
