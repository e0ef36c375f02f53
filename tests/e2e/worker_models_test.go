package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/internal/supervisor"
	"github.com/nexixai/agentos/modelpolicy"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestModelsOnWorkers is issue 12's GPU-pinned model endpoints with real
// processes: authenticated NATS, a worker registered with `agentos
// workers add` fronting a fake vLLM (the OpenAI wire, in this test) with
// `serve worker --model-endpoint`, and model-policy whose catalogue
// places model gpu/llama on workers labelled gpu=a100. Calls through
// model-policy's OpenAI-compatible API are governed as for any backend
// (a tenant whose token budget cannot cover the call is refused before
// any worker sees it; the e-mail address in the prompt is redacted before
// the worker sees it), the usage recorded is the backend's, the audit chain verifies, and
// with the worker killed a call fails dependency_unavailable.
func TestModelsOnWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pgURL := pgtest.URL(t)
	keys := t.TempDir()
	control, err := supervisor.EnsureControlNkey(keys)
	require.NoError(t, err)
	natsAddr, monitor := testnode.FreeAddr(t), testnode.FreeAddr(t)

	var mu sync.Mutex
	var seen []string // the request bodies the backend received
	vllm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, string(body))
		mu.Unlock()
		var req struct {
			Model  string `json:"model"`
			Stream bool   `json:"stream"`
		}
		_ = json.Unmarshal(body, &req)
		if !req.Stream {
			fmt.Fprintf(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":"%s on the a100 says hi."},"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":8,"total_tokens":29}}`, req.Model)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range []string{"Streamed ", "from ", "the ", "a100."} {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", c)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":4,\"total_tokens\":25}}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(vllm.Close)

	env := []string{"AGENTOS_STORE_URL=" + pgURL, "AGENTOS_BUS_URL=nats://" + natsAddr, "AGENTOS_BUS_NKEY_FILE=" + control,
		"AGENTOS_WORKER_HEARTBEAT_TIMEOUT=2s"}
	n := testnode.Start(t, testnode.Options{Services: []string{"model-policy"}, Env: env}) // makes the schema
	startAuthNATS(t, n, natsAddr, monitor, control)
	n.StartService("orchestrator")
	base := n.URL("orchestrator")
	admin := n.Credentials().PlatformAdmin.Token

	// model-policy with the worker backend, beside the node's own.
	yaml := strings.Replace(modelpolicy.DefaultCatalogueYAML, "backends:\n",
		"backends:\n  - name: gpu\n    type: worker\n    placement: {labels: {gpu: a100}}\n    endpoint: llama\n    timeout: 10s\n", 1)
	yaml = strings.Replace(yaml, "models:\n", "models:\n  - {name: llama, backend: gpu, upstream_model: llama-3-70b, capabilities: [chat], tiers: [premium], max_output_tokens: 512, price_per_1k_input_usd: 1, price_per_1k_output_usd: 2}\n", 1)
	catalogue := filepath.Join(t.TempDir(), "catalogue.yaml")
	require.NoError(t, os.WriteFile(catalogue, []byte(yaml), 0o600))
	mpAddr := testnode.FreeAddr(t)
	mp := "http://" + mpAddr
	mpProc := startProc(t, n, "model-policy-gpu", "serve", "model-policy", "--addr", mpAddr, "--config", catalogue)
	require.Eventually(t, func() bool {
		resp, err := http.Get(mp + "/v1/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 60*time.Second, 100*time.Millisecond, "model-policy: %s", mpProc.output())

	ctx := context.Background()
	msg, err := n.Run(ctx, "workers", "add", "w-gpu", "--labels", "gpu=a100")
	require.NoError(t, err, msg)
	worker := startProc(t, n, "w-gpu", "serve", "worker", "--id", "w-gpu", "--model-endpoint", "llama=vllm:"+vllm.URL+"/v1")
	require.Eventually(t, func() bool {
		l, ok := liveWorkers(t, base, admin)["w-gpu"]
		return ok && fmt.Sprint(l["models"]) == "[llama]"
	}, 30*time.Second, 100*time.Millisecond, "worker: %s", worker.output())

	demo := map[string]string{"X-Tenant-Id": "tnt_demo"}
	chat := func(stream bool) (int, string) {
		code, _, body := fedDo(t, nil, "POST", mp+"/v1/chat/completions", demo, map[string]any{"model": "gpu/llama", "stream": stream,
			"messages": []any{map[string]any{"role": "user", "content": "Write to jane.doe@example.com about the GPUs."}}})
		return code, string(body)
	}
	code, body := chat(false)
	require.Equal(t, 200, code, body)
	require.Contains(t, body, "llama-3-70b on the a100 says hi.")
	code, body = chat(true)
	require.Equal(t, 200, code, body)
	var text strings.Builder
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		require.NoError(t, json.Unmarshal([]byte(data), &chunk), data)
		for _, c := range chunk.Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	require.Equal(t, "Streamed from the a100.", text.String(), body)

	// Budgets apply as for any backend: a tenant whose token budget cannot
	// cover the call is refused before anything reaches a worker.
	adminH := map[string]string{"Authorization": "Bearer " + admin}
	code, out := runsJSON(t, "POST", base+"/v1/admin/tenants", adminH, map[string]any{"tenant_create": map[string]any{
		"tenant_id": "tnt_gpu_budget", "name": "budget", "plan_tier": "free",
		"entitlements": map[string]any{"model_tiers_allowed": []string{"*"}, "model_backends_allowed": []string{"*"}},
		"quotas":       map[string]any{"models": map[string]any{"token_budget": map[string]any{"window": "day", "max_tokens": 1}}}}})
	require.Equal(t, 201, code, out)
	code, _, raw := fedDo(t, nil, "POST", mp+"/v1/chat/completions", map[string]string{"X-Tenant-Id": "tnt_gpu_budget"},
		map[string]any{"model": "gpu/llama", "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	require.Contains(t, []int{402, 429}, code, string(raw))

	// Governed before dispatch: the backend never saw the address.
	mu.Lock()
	require.Len(t, seen, 2)
	for _, s := range seen {
		require.NotContains(t, s, "jane.doe@example.com")
		require.Contains(t, s, "llama-3-70b")
	}
	mu.Unlock()

	// Usage settled from the backend's own counts, priced by the catalogue.
	code, usage := runsJSON(t, "GET", mp+"/v1/usage?tenant_id=tnt_demo", adminH, nil)
	require.Equal(t, 200, code, usage)
	var llama map[string]any
	for _, m := range usage["usage"].(map[string]any)["by_model"].([]any) {
		if m.(map[string]any)["model_id"] == "gpu/llama" {
			llama = m.(map[string]any)
		}
	}
	require.NotNil(t, llama, "%v", usage)
	require.EqualValues(t, 2, llama["requests"])
	require.EqualValues(t, 42, llama["input_tokens"])
	require.EqualValues(t, 12, llama["output_tokens"])
	require.InDelta(t, (42*1+12*2)/1000.0, llama["cost_usd"], 1e-9)

	code, verify := runsJSON(t, "GET", base+"/v1/admin/audit:verify", adminH, nil)
	require.Equal(t, 200, code, verify)
	require.Equal(t, true, verify["verify"].(map[string]any)["ok"], "%v", verify)

	// The worker is killed: the call fails dependency_unavailable, no hang.
	worker.signal(syscall.SIGKILL)
	start := time.Now()
	code, body = chat(false)
	require.Equal(t, 503, code, body)
	require.Contains(t, body, "dependency_unavailable")
	require.Less(t, time.Since(start), 30*time.Second)
}
