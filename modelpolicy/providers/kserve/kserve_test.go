package kserve

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

// fakeTriton serves the KServe v2 routes a Triton text model has; noStream
// answers 404 on generate_stream like a server without the extension.
func fakeTriton(t *testing.T, counts, noStream bool, seen *[]map[string]any) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		if seen != nil {
			*seen = append(*seen, body)
		}
		switch {
		case r.URL.Path == "/v2/health/ready":
		case r.URL.Path == "/v2/models/llama/infer":
			in := body["inputs"].([]any)[0].(map[string]any)
			prompt := in["data"].([]any)[0].(string)
			outputs := []any{map[string]any{"name": "text_output", "datatype": "BYTES", "shape": []int{1},
				"data": []string{fmt.Sprintf("echo of %d bytes", len(prompt))}}}
			if counts {
				outputs = append(outputs, map[string]any{"name": "input_tokens", "datatype": "INT32", "shape": []int{1}, "data": []int{12}},
					map[string]any{"name": "output_tokens", "datatype": "INT32", "shape": []int{1}, "data": []int{4}})
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"model_name": "llama", "outputs": outputs})
		case r.URL.Path == "/v2/models/llama/generate_stream" && !noStream:
			w.Header().Set("Content-Type", "text/event-stream")
			for _, c := range []string{"Tri", "ton ", "streams."} {
				fmt.Fprintf(w, "data: {\"model_name\":\"llama\",\"text_output\":%q}\n\n", c)
				w.(http.Flusher).Flush()
			}
		case r.URL.Path == "/v2/models/busy/infer":
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"queue full"}`)
		case r.URL.Path == "/v2/models/bad/infer":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"input text_input: shape mismatch"}`)
		case r.URL.Path == "/v2/models/broken/infer":
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"error":"model crashed"}`)
		case r.URL.Path == "/v2/models/garbled/generate_stream":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"text_output\":\"ok\"}\n\ndata: {not json\n\n")
		case r.URL.Path == "/v2/models/hang/infer":
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":"unknown route %s"}`, r.URL.Path)
		}
	}))
	t.Cleanup(ts.Close)
	return ts
}

func req(model string) providers.ChatRequest {
	temp := 0.2
	return providers.ChatRequest{Model: model, MaxOutputTokens: 64, Temperature: &temp,
		Messages: []modelport.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}}}
}

func TestInferWithAndWithoutCounts(t *testing.T) {
	t.Parallel()
	var seen []map[string]any
	ts := fakeTriton(t, true, false, &seen)
	p := New(Config{Name: "triton", BaseURL: ts.URL + "/"})
	require.Equal(t, "kserve", p.Kind())
	prompt := "system: Be brief.\nuser: Hi\nassistant: "
	require.Equal(t, prompt, Prompt(req("llama").Messages))

	out, err := p.Chat(context.Background(), req("llama"))
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("echo of %d bytes", len(prompt)), out.Message.Content)
	require.Equal(t, modelport.Usage{InputTokens: 12, OutputTokens: 4, TotalTokens: 16}, out.Usage)
	require.Equal(t, "stop", out.FinishReason)
	in := seen[0]["inputs"].([]any)[0].(map[string]any)
	require.Equal(t, "text_input", in["name"])
	require.Equal(t, "BYTES", in["datatype"])
	require.Equal(t, map[string]any{"max_tokens": 64.0, "temperature": 0.2}, seen[0]["parameters"])

	ts2 := fakeTriton(t, false, false, nil)
	out, err = New(Config{Name: "triton", BaseURL: ts2.URL}).Chat(context.Background(), req("llama"))
	require.NoError(t, err)
	require.True(t, out.Usage.Estimated, "no counts from the server: estimated")
	require.Positive(t, out.Usage.InputTokens)
	require.NoError(t, New(Config{BaseURL: ts2.URL}).Health(context.Background()))
}

func TestStreamAndFallback(t *testing.T) {
	t.Parallel()
	var seen []map[string]any
	ts := fakeTriton(t, false, false, &seen)
	var got []string
	out, err := New(Config{Name: "triton", BaseURL: ts.URL}).ChatStream(context.Background(), req("llama"), func(d providers.Delta) error {
		got = append(got, d.Content)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"Tri", "ton ", "streams."}, got)
	require.Equal(t, "Triton streams.", out.Message.Content)
	require.Equal(t, "system: Be brief.\nuser: Hi\nassistant: ", seen[0]["text_input"])
	require.Equal(t, true, seen[0]["parameters"].(map[string]any)["stream"])

	// Without the generate extension: infer, one fragment.
	plain := fakeTriton(t, true, true, nil)
	got = nil
	out, err = New(Config{Name: "triton", BaseURL: plain.URL}).ChatStream(context.Background(), req("llama"), func(d providers.Delta) error {
		got = append(got, d.Content)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{out.Message.Content}, got)
	require.Equal(t, int64(16), out.Usage.TotalTokens)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ts := fakeTriton(t, false, false, nil)
	p := New(Config{Name: "triton", BaseURL: ts.URL})
	ctx := context.Background()
	for model, want := range map[string]errs.Code{"busy": errs.DependencyUnavailable, "bad": errs.InvalidRequest,
		"broken": errs.DependencyUnavailable, "nope": errs.DependencyUnavailable} {
		_, err := p.Chat(ctx, req(model))
		require.Equal(t, want, errs.CodeOf(err), "%s: %v", model, err)
	}
	_, err := p.Chat(ctx, req("bad"))
	require.Contains(t, err.Error(), "shape mismatch", "the server's message")

	_, err = p.ChatStream(ctx, req("garbled"), func(providers.Delta) error { return nil })
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "%v", err)

	tools := req("llama")
	tools.Tools = []modelport.ToolSpec{{ToolID: "tool.echo", Name: "echo"}}
	_, err = p.Chat(ctx, tools)
	require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))
	require.Contains(t, err.Error(), "tools")
	_, err = p.Embed(ctx, providers.EmbedRequest{Model: "llama", Texts: []string{"a"}})
	require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))

	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = p.Chat(tctx, req("hang"))
	require.Equal(t, errs.Timeout, errs.CodeOf(err), "a server that accepts and never answers: %v", err)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + l.Addr().String()
	l.Close()
	_, err = New(Config{Name: "gone", BaseURL: closed}).Chat(ctx, req("llama"))
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "%v", err)
	require.Error(t, New(Config{Name: "gone", BaseURL: closed}).Health(ctx))
}

func FuzzParseChunk(f *testing.F) {
	for _, s := range []string{`{"text_output":"hi"}`, `{"error":"x"}`, `{}`, `{"text_output":3}`, `{not json`, ``, `[]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		text, err := ParseChunk(data, "text_output")
		if err != nil && text != "" {
			t.Fatalf("text %q with error %v", text, err)
		}
		if err == nil && text != "" && !strings.Contains(data, "text_output") {
			t.Fatalf("text %q from an event without text_output", text)
		}
	})
}
