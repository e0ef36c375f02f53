package anthropic

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
		if body["stream"] == true {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, ev := range []string{
				`{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":0}}}`,
				`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
				`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}`,
				`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}`,
				`{"type":"message_stop"}`,
			} {
				fmt.Fprintf(w, "event: x\ndata: %s\n\n", ev)
			}
			return
		}
		_, _ = io.WriteString(w, `{"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}`)
	})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := httpx.WithTrace(context.Background(), httpx.ParseTraceparent("00-"+traceID+"-00f067aa0ba902b7-01"))
	p := New(Config{BaseURL: ts.URL})
	req := providers.ChatRequest{Model: "m", Messages: []modelport.Message{{Role: "user", Content: "hi"}}}
	_, err := p.Chat(ctx, req)
	require.NoError(t, err)
	_, err = p.ChatStream(ctx, req, func(providers.Delta) error { return nil })
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 2)
	own := httpx.TraceFrom(ctx).SpanID
	for _, tp := range seen {
		parts := strings.Split(tp, "-")
		require.Len(t, parts, 4, tp)
		require.Equal(t, traceID, parts[1], "the backend call continues the caller's trace")
		require.NotEqual(t, own, parts[2], "as a child span")
	}
}
