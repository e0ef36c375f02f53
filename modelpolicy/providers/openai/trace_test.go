package openai

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

func TestTraceparentReachesBackend(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	ts := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		mu.Lock()
		seen = append(seen, r.Header.Get("traceparent"))
		mu.Unlock()
		switch {
		case r.URL.Path == "/v1/embeddings":
			_, _ = io.WriteString(w, `{"data":[{"index":0,"embedding":[0.1]}],"usage":{"prompt_tokens":1,"total_tokens":1}}`)
		case body["stream"] == true:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
		case r.URL.Path == "/v1/models":
			_, _ = io.WriteString(w, `{"data":[]}`)
		default:
			_, _ = io.WriteString(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`)
		}
	})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := httpx.WithTrace(context.Background(), httpx.ParseTraceparent("00-"+traceID+"-00f067aa0ba902b7-01"))
	p := New(Config{BaseURL: ts.URL + "/v1"})
	req := providers.ChatRequest{Model: "m", Messages: []modelport.Message{{Role: "user", Content: "hi"}}}
	_, err := p.Chat(ctx, req)
	require.NoError(t, err)
	_, err = p.ChatStream(ctx, req, func(providers.Delta) error { return nil })
	require.NoError(t, err)
	_, err = p.Embed(ctx, providers.EmbedRequest{Model: "e", Texts: []string{"a"}})
	require.NoError(t, err)
	require.NoError(t, p.Health(ctx))
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 4)
	own := httpx.TraceFrom(ctx).SpanID
	for _, tp := range seen {
		parts := strings.Split(tp, "-")
		require.Len(t, parts, 4, tp)
		require.Equal(t, traceID, parts[1], "the backend call continues the caller's trace")
		require.NotEqual(t, own, parts[2], "as a child span")
		require.Equal(t, "01", parts[3])
	}
}
