package builtin_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/memory"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/tools/toolstest"
	mpbuiltin "github.com/nexixai/agentos/modelpolicy/providers/builtin"
)

// embedder embeds as model-policy's builtin backend does and records the
// attribution of each call.
type embedder struct{ reqs []modelport.EmbedRequest }

func (e *embedder) Embed(ctx context.Context, ac auth.Context, req modelport.EmbedRequest) (modelport.EmbedResponse, error) {
	if err := ctx.Err(); err != nil {
		return modelport.EmbedResponse{}, err
	}
	if ac.TenantID == "" {
		return modelport.EmbedResponse{}, errs.E(errs.Unauthorized, "no tenant")
	}
	e.reqs = append(e.reqs, req)
	resp := modelport.EmbedResponse{Route: modelport.Route{Backend: "builtin", Model: "builtin/embed-small"}}
	for i, t := range req.Input.Texts {
		resp.Output.Embeddings = append(resp.Output.Embeddings, modelport.Embedding{Index: i, Vector: mpbuiltin.Project(t, 64)})
	}
	return resp, nil
}

func newMemory(t *testing.T) (*memory.Service, *embedder) {
	db, err := sqlite.Open(context.Background(), ":memory:")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	e := &embedder{}
	return &memory.Service{Store: db, Model: e, Quota: func(context.Context, string) (int64, error) { return 4096, nil }}, e
}

func TestMemoryToolsConformance(t *testing.T) {
	t.Parallel()
	t.Run("put", func(t *testing.T) {
		t.Parallel()
		toolstest.Run(t, func(t *testing.T) tools.Tool { svc, _ := newMemory(t); return builtin.MemoryPut(svc) },
			toolstest.Case{Name: "text", Input: json.RawMessage(`{"key":"k1","value":{"text":"otters hold hands"}}`),
				Check: func(t *testing.T, out json.RawMessage) {
					var o struct {
						Key, Namespace string
						Bytes          int64
					}
					require.NoError(t, json.Unmarshal(out, &o))
					require.Equal(t, "k1", o.Key)
					require.Equal(t, "default", o.Namespace)
					require.Positive(t, o.Bytes)
				}},
			toolstest.Case{Name: "missing value", Input: json.RawMessage(`{"key":"k"}`), WantCode: errs.InvalidRequest, WantField: "value"},
			toolstest.Case{Name: "control key", Input: json.RawMessage(`{"key":"a\nb","value":1}`), WantCode: errs.InvalidRequest, WantField: "key"},
			toolstest.Case{Name: "over quota", Input: json.RawMessage(`{"key":"big","value":"` + repeat("x", 5000) + `"}`), WantCode: errs.QuotaExceeded},
		)
	})
	t.Run("search", func(t *testing.T) {
		t.Parallel()
		toolstest.Run(t, func(t *testing.T) tools.Tool { svc, _ := newMemory(t); return builtin.MemorySearch(svc) },
			toolstest.Case{Name: "empty memory", Input: json.RawMessage(`{"query":"otters"}`),
				Check: func(t *testing.T, out json.RawMessage) {
					require.JSONEq(t, `{"namespace":"default","results":[]}`, string(out))
				}},
			toolstest.Case{Name: "bad mode", Input: json.RawMessage(`{"query":"x","mode":"fuzzy"}`), WantCode: errs.InvalidRequest, WantField: "mode"},
			toolstest.Case{Name: "top_k", Input: json.RawMessage(`{"query":"x","top_k":500}`), WantCode: errs.InvalidRequest, WantField: "top_k"},
		)
	})
}

func repeat(s string, n int) string {
	b := make([]byte, 0, n*len(s))
	for range n {
		b = append(b, s...)
	}
	return string(b)
}

// TestMemoryToolsRoundTrip: what tool.memory.put stores, tool.memory.search
// finds, in the call's tenant only, with embeddings attributed to the run.
func TestMemoryToolsRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc, emb := newMemory(t)
	put, search := builtin.MemoryPut(svc), builtin.MemorySearch(svc)
	for key, text := range map[string]string{"otter": "sea otters hold hands while sleeping", "owl": "owls hunt at night"} {
		_, err := tools.InvokeTool(ctx, put, toolstest.Call("tnt_a", json.RawMessage(`{"key":"`+key+`","value":{"text":"`+text+`"},"namespace":"zoo"}`)), 0)
		require.NoError(t, err)
	}
	require.Equal(t, "agt_toolstest", emb.reqs[0].AgentID)
	require.Equal(t, "run_toolstest", emb.reqs[0].RunID)
	out, err := tools.InvokeTool(ctx, search, toolstest.Call("tnt_a", json.RawMessage(`{"query":"sleeping otters","namespace":"zoo","top_k":1}`)), 0)
	require.NoError(t, err)
	var res struct {
		Results []memory.Result `json:"results"`
	}
	require.NoError(t, json.Unmarshal(out, &res))
	require.Len(t, res.Results, 1)
	require.Equal(t, "otter", res.Results[0].Key)
	out, err = tools.InvokeTool(ctx, search, toolstest.Call("tnt_b", json.RawMessage(`{"query":"sleeping otters","namespace":"zoo"}`)), 0)
	require.NoError(t, err)
	require.JSONEq(t, `{"namespace":"zoo","results":[]}`, string(out))
}
