package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/memory"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestMemorySearch: documents stored over REST are found by keyword,
// vector (embeddings made by the real model-policy's builtin backend) and
// hybrid search, an agent finds one with tool.memory.search, and another
// tenant sees none of them.
func TestMemorySearch(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	creds := n.Credentials()
	a := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: creds.PlatformAdmin.Token, TenantID: creds.TenantID}

	docs := map[string]string{
		"whale":  "Humpback whales migrate thousands of kilometres to breed in warm water",
		"bike":   "How to fix a flat bicycle tire with a patch kit and a pump",
		"bread":  "Sourdough bread needs a starter, flour, water and a long overnight rise",
		"coffee": "Espresso extraction depends on grind size, dose and water temperature",
	}
	for k, text := range docs {
		e, err := a.MemoryPut(ctx, "default", k, map[string]any{"text": text, "kind": "fact"})
		require.NoError(t, err)
		require.Positive(t, e.Bytes)
	}
	got, err := a.MemoryGet(ctx, "default", "bike")
	require.NoError(t, err)
	require.JSONEq(t, `{"text":"`+docs["bike"]+`","kind":"fact"}`, string(got.Value))

	for _, mode := range []string{memory.ModeKeyword, memory.ModeVector, memory.ModeHybrid} {
		res, err := a.MemorySearch(ctx, "default", memory.Query{Query: "fixing a flat tire", Mode: mode, TopK: 3})
		require.NoError(t, err)
		require.NotEmpty(t, res, mode)
		require.Equal(t, "bike", res[0].Key, mode)
	}
	_, err = a.MemorySearch(ctx, "default", memory.Query{Query: "x", Mode: "fuzzy"})
	require.True(t, errors.Is(err, errs.ErrInvalid), "%v", err)
	require.ErrorContains(t, err, "mode")

	// An agent searches its tenant's memory: the builtin model fills the
	// tool's required "query" with the user message.
	_, err = a.PutAgent(ctx, "agt_e2e_memory", map[string]any{"name": "Memory", "model_ref": "tier:fast",
		"tools": []string{"tool.memory.search"}})
	require.NoError(t, err)
	run, err := a.CreateRun(ctx, "agt_e2e_memory", "humpback whales migrate", nil)
	require.NoError(t, err)
	run = waitMemoryRun(ctx, t, a, run.RunID)
	require.Equal(t, store.RunCompleted, run.Status, "%+v", run.Error)
	out, _ := json.Marshal(run.Output)
	require.Contains(t, string(out), `whale`)

	// Every embedding went through model-policy and was metered: four
	// puts, the vector and hybrid searches and the agent's (hybrid)
	// search; keyword search and the refused mode made none. The agent's
	// is attributed to its run.
	var usage struct {
		Usage struct {
			ByModel []struct {
				ModelID  string `json:"model_id"`
				Requests int64  `json:"requests"`
			} `json:"by_model"`
		} `json:"usage"`
	}
	require.NoError(t, a.Do(ctx, "GET", n.URL("model-policy"), "/v1/usage?tenant_id=tnt_demo", nil, &usage))
	embeds := map[string]int64{}
	for _, m := range usage.Usage.ByModel {
		embeds[m.ModelID] = m.Requests
	}
	require.EqualValues(t, 7, embeds["builtin/embed-small"], "%+v", usage)
	require.NoError(t, a.Do(ctx, "GET", n.URL("model-policy"), "/v1/usage?tenant_id=tnt_demo&run_id="+run.RunID, nil, &usage))
	embeds = map[string]int64{}
	for _, m := range usage.Usage.ByModel {
		embeds[m.ModelID] = m.Requests
	}
	require.EqualValues(t, 1, embeds["builtin/embed-small"], "the run's search embedding, attributed to the run: %+v", usage)

	// Another tenant sees nothing of tnt_demo's memory.
	_, err = a.CreateTenant(ctx, map[string]any{"tenant_id": "tnt_memory_b", "name": "B"})
	require.NoError(t, err)
	b := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: creds.PlatformAdmin.Token, TenantID: "tnt_memory_b"}
	res, err := b.MemorySearch(ctx, "default", memory.Query{Query: "humpback whales migrate flat tire"})
	require.NoError(t, err)
	require.Empty(t, res)
	_, err = b.MemoryGet(ctx, "default", "whale")
	require.True(t, errors.Is(err, errs.ErrNotFound), "%v", err)

	require.NoError(t, a.MemoryDelete(ctx, "default", "whale"))
	_, err = a.MemoryGet(ctx, "default", "whale")
	require.True(t, errors.Is(err, errs.ErrNotFound), "%v", err)
}

// waitRun polls a run until it is terminal.
func waitMemoryRun(ctx context.Context, t *testing.T, c *apiclient.Client, runID string) store.Run {
	t.Helper()
	for {
		r, err := c.GetRun(ctx, runID)
		require.NoError(t, err)
		if r.Status.Terminal() {
			return r
		}
		select {
		case <-ctx.Done():
			t.Fatalf("run %s still %s", runID, r.Status)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
