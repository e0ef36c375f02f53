package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/modelpolicy/providers"
	"github.com/nexixai/agentos/modelpolicy/providers/kserve"
	"github.com/nexixai/agentos/modelpolicy/providers/openai"
	"github.com/nexixai/agentos/modelpolicy/providers/workerpool"
)

// fakeVLLM is a model server on the OpenAI wire (as vLLM and TGI serve
// it): chat, streamed chat and embeddings, with usage. hold, when set,
// makes a request wait for it (or for the client to go) before answering;
// a streamed one after its first fragment if holdAfterFirst.
type fakeVLLM struct {
	*httptest.Server
	mu             sync.Mutex
	requests       []map[string]any
	hold           chan struct{}
	holdAfterFirst bool
}

func newFakeVLLM(t *testing.T) *fakeVLLM {
	f := &fakeVLLM{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		f.requests = append(f.requests, body)
		hold, afterFirst := f.hold, f.holdAfterFirst
		f.mu.Unlock()
		wait := func() {
			if hold != nil {
				select {
				case <-hold:
				case <-r.Context().Done():
				}
			}
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/embeddings"):
			fmt.Fprint(w, `{"data":[{"index":0,"embedding":[0.5,0.25]}],"usage":{"prompt_tokens":3,"total_tokens":3}}`)
		case body["stream"] == true && body["model"] == "burst":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 500 { // as fast as it can write them
				fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%d \"},\"finish_reason\":null}]}\n\n", i)
			}
			fmt.Fprint(w, "data: [DONE]\n\n")
		case body["stream"] == true:
			if !afterFirst {
				wait()
			}
			w.Header().Set("Content-Type", "text/event-stream")
			for i, c := range []string{"The ", "GPU ", "says ", "hi."} {
				fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", c)
				w.(http.Flusher).Flush()
				if i == 0 && afterFirst {
					wait()
				}
			}
			fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
			fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":4,\"total_tokens\":15}}\n\ndata: [DONE]\n\n")
		default:
			wait()
			fmt.Fprintf(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":"The GPU says hi to %s."},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}`, body["model"])
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeVLLM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func chatReq() providers.ChatRequest {
	return providers.ChatRequest{Model: "llama-3-70b", Messages: []modelport.Message{{Role: "user", Content: "hello"}}}
}

func modelBundle(t *testing.T, f *fakeVLLM) (*bundle, *workerpool.Provider) {
	b := setup(t)
	b.models = map[string]providers.Provider{"llama": openai.New(openai.Config{Name: "llama", BaseURL: f.URL + "/v1"})}
	p := workerpool.New(workerpool.Config{Name: "gpu", Labels: map[string]string{"gpu": "a100"}, Endpoint: "llama",
		Timeout: 20 * time.Second, Dispatch: b.dispatch})
	return b, p
}

func TestModelCallsRunOnTheWorkerThatFrontsTheEndpoint(t *testing.T) {
	t.Parallel()
	f := newFakeVLLM(t)
	b, p := modelBundle(t, f)
	ctx := auth.With(context.Background(), auth.Context{TenantID: "ten_a"})
	_, err := p.Chat(context.Background(), chatReq())
	require.Equal(t, errs.Internal, errs.CodeOf(err), "only inside a tenant's request: %v", err)
	require.Error(t, p.Health(ctx), "no worker yet")
	b.startWorker(t, "w-gpu", map[string]string{"gpu": "a100", "zone": "eu"})
	require.Equal(t, []string{"llama"}, live(t, b, "w-gpu").Models)
	require.NoError(t, p.Health(ctx))

	resp, err := p.Chat(ctx, chatReq())
	require.NoError(t, err)
	require.Equal(t, "The GPU says hi to llama-3-70b.", resp.Message.Content)
	require.Equal(t, modelport.Usage{InputTokens: 11, OutputTokens: 7, TotalTokens: 18}, resp.Usage, "the backend's own usage")
	require.Equal(t, "stop", resp.FinishReason)

	var deltas []string
	resp, err = p.ChatStream(ctx, chatReq(), func(d providers.Delta) error {
		deltas = append(deltas, d.Content)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"The ", "GPU ", "says ", "hi."}, deltas, "fragments arrive in order, as produced")
	require.Equal(t, "The GPU says hi.", resp.Message.Content)
	require.Equal(t, int64(15), resp.Usage.InputTokens+resp.Usage.OutputTokens)

	// A burst of fragments faster than the waiter takes them: none lost.
	burst := chatReq()
	burst.Model = "burst"
	n := 0
	resp, err = p.ChatStream(ctx, burst, func(d providers.Delta) error {
		require.Equal(t, fmt.Sprintf("%d ", n), d.Content)
		n++
		time.Sleep(20 * time.Microsecond)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 500, n)

	emb, err := p.Embed(ctx, providers.EmbedRequest{Model: "e5", Texts: []string{"a"}})
	require.NoError(t, err)
	require.Equal(t, [][]float32{{0.5, 0.25}}, emb.Vectors)

	other := workerpool.New(workerpool.Config{Name: "gpu", Labels: map[string]string{"gpu": "a100"}, Endpoint: "mistral", Dispatch: b.dispatch})
	_, err = other.Chat(ctx, chatReq())
	require.Equal(t, errs.NotFound, errs.CodeOf(err), "%v", err)
	require.Contains(t, err.Error(), "mistral")

	none := workerpool.New(workerpool.Config{Name: "h100", Labels: map[string]string{"gpu": "h100"}, Endpoint: "llama", Dispatch: b.dispatch})
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = none.Chat(tctx, chatReq())
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "%v", err)
}

func TestModelWorkerDeathBeforeAndAfterTheFirstToken(t *testing.T) {
	t.Parallel()
	f := newFakeVLLM(t)
	b, p := modelBundle(t, f)
	gpu := map[string]string{"gpu": "a100"}
	ctx := auth.With(context.Background(), auth.Context{TenantID: "ten_a"})

	// Before any token: sent again, to the other worker.
	f.hold = make(chan struct{})
	kills := map[string]func(){"w-1": b.startWorker(t, "w-1", gpu), "w-2": b.startWorker(t, "w-2", gpu)}
	type result struct {
		resp   providers.ChatResponse
		deltas int
		err    error
	}
	res := make(chan result, 1)
	go func() {
		n := 0
		r, err := p.ChatStream(ctx, chatReq(), func(providers.Delta) error { n++; return nil })
		res <- result{r, n, err}
	}()
	first := waitInFlightAny(t, b, "w-1", "w-2")
	kills[first]()
	require.Eventually(t, func() bool { return f.count() >= 2 }, 15*time.Second, 20*time.Millisecond, "sent again")
	close(f.hold)
	r := <-res
	require.NoError(t, r.err)
	require.Equal(t, "The GPU says hi.", r.resp.Message.Content)
	require.Equal(t, 4, r.deltas, "no fragment twice")

	// After the first token: not sent again (the fragments reached the
	// caller); dependency_unavailable, so the router may fall back.
	f.mu.Lock()
	f.hold, f.holdAfterFirst = make(chan struct{}), true
	f.mu.Unlock()
	defer close(f.hold)
	second := map[string]string{"w-1": "w-2", "w-2": "w-1"}[first]
	n := f.count()
	go func() {
		k := 0
		r, err := p.ChatStream(ctx, chatReq(), func(providers.Delta) error { k++; return nil })
		res <- result{r, k, err}
	}()
	waitInFlight(t, b, second)
	require.Eventually(t, func() bool { return f.count() > n }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // the first fragment on its way
	kills[second]()
	r = <-res
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(r.err), "%v", r.err)
	require.Equal(t, 1, r.deltas)
	require.Equal(t, n+1, f.count(), "not sent again")
}

// A worker fronting a Triton (KServe v2) endpoint: the same model task,
// another wire.
func TestModelCallOnATritonEndpoint(t *testing.T) {
	t.Parallel()
	triton := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/models/gemma/infer" {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"no such route"}`)
			return
		}
		fmt.Fprint(w, `{"model_name":"gemma","outputs":[{"name":"text_output","datatype":"BYTES","shape":[1],"data":["Triton on the a100."]},`+
			`{"name":"input_tokens","datatype":"INT32","shape":[1],"data":[9]},{"name":"output_tokens","datatype":"INT32","shape":[1],"data":[5]}]}`)
	}))
	t.Cleanup(triton.Close)
	b := setup(t)
	b.models = map[string]providers.Provider{"gemma": kserve.New(kserve.Config{Name: "gemma", BaseURL: triton.URL})}
	b.startWorker(t, "w-triton", map[string]string{"gpu": "a100"})
	p := workerpool.New(workerpool.Config{Name: "gpu", Labels: map[string]string{"gpu": "a100"}, Endpoint: "gemma", Dispatch: b.dispatch})
	ctx := auth.With(context.Background(), auth.Context{TenantID: "ten_a"})
	req := chatReq()
	req.Model = "gemma"
	var got []string
	resp, err := p.ChatStream(ctx, req, func(d providers.Delta) error { got = append(got, d.Content); return nil })
	require.NoError(t, err)
	require.Equal(t, []string{"Triton on the a100."}, got, "no generate_stream: one fragment")
	require.Equal(t, modelport.Usage{InputTokens: 9, OutputTokens: 5, TotalTokens: 14}, resp.Usage)
}
