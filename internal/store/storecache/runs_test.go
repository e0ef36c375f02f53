package storecache

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// A finished run is read from the store once, then from memory; a live run
// is read from the store every time; a change that may rewrite a finished
// run drops it and is reported to Notify.
func TestTerminalRunsAreCached(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "a.db"))
	require.NoError(t, err)
	defer db.Close()
	c := New(db, time.Hour)
	var got []Invalidation
	c.Notify(func(_ context.Context, inv Invalidation) { got = append(got, inv) })

	res, err := c.CreateRun(ctx, store.CreateRunParams{Run: store.Run{TenantID: "tnt_a", AgentID: "agt_1",
		Input: store.RunInput{Type: "text", Text: "hi"}, Tooling: store.Tooling{ToolAllowlist: []string{"t1"}}}})
	require.NoError(t, err)
	id := res.Run.RunID

	// Live: every read goes to the store (here the raw db changes under it).
	live, err := c.GetRun(ctx, "tnt_a", id)
	require.NoError(t, err)
	require.Equal(t, store.RunQueued, live.Status)
	now := time.Now().UTC()
	done := live
	done.Status, done.StartedAt, done.CompletedAt = store.RunCompleted, &now, &now
	done.Output = &store.Output{Type: "text", Text: "answer"}
	_, err = db.ApplyRunChange(ctx, store.RunChange{TenantID: "tnt_a", RunID: id,
		FromStatuses: []store.RunStatus{store.RunQueued}, Run: &done})
	require.NoError(t, err)
	first, err := c.GetRun(ctx, "tnt_a", id)
	require.NoError(t, err)
	require.Equal(t, store.RunCompleted, first.Status, "a live run is not served from memory")

	// Terminal: cached. A write behind the decorator's back (possible only
	// without FromStatuses) is not seen, which proves the read is memory.
	behind := first
	behind.Output = &store.Output{Type: "text", Text: "rewritten behind the cache"}
	_, err = db.ApplyRunChange(ctx, store.RunChange{TenantID: "tnt_a", RunID: id, Run: &behind})
	require.NoError(t, err)
	second, err := c.GetRun(ctx, "tnt_a", id)
	require.NoError(t, err)
	require.Equal(t, "answer", second.Output.Text)

	// Callers get copies: changing one does not change the cache.
	second.Output.Text = "changed by a caller"
	second.Tooling.ToolAllowlist[0] = "changed"
	third, err := c.GetRun(ctx, "tnt_a", id)
	require.NoError(t, err)
	require.Equal(t, "answer", third.Output.Text)
	require.Equal(t, []string{"t1"}, third.Tooling.ToolAllowlist)

	// A change that names live statuses cannot touch a terminal run: it is
	// refused by the store, nothing is dropped or signalled.
	_, err = c.ApplyRunChange(ctx, store.RunChange{TenantID: "tnt_a", RunID: id,
		FromStatuses: []store.RunStatus{store.RunRunning}, Run: &behind})
	require.ErrorIs(t, err, errs.ErrConflict)
	require.Empty(t, got)

	// A change without FromStatuses goes through the decorator: dropped
	// here, signalled to the replicas, the next read sees it.
	behind.Output = &store.Output{Type: "text", Text: "rewritten through the cache"}
	_, err = c.ApplyRunChange(ctx, store.RunChange{TenantID: "tnt_a", RunID: id, Run: &behind})
	require.NoError(t, err)
	require.Equal(t, []Invalidation{{Entity: EntityRun, TenantID: "tnt_a", ID: id}}, got)
	fourth, err := c.GetRun(ctx, "tnt_a", id)
	require.NoError(t, err)
	require.Equal(t, "rewritten through the cache", fourth.Output.Text)

	// Another replica's signal drops the entry.
	behind.Output = &store.Output{Type: "text", Text: "by another replica"}
	_, err = db.ApplyRunChange(ctx, store.RunChange{TenantID: "tnt_a", RunID: id, Run: &behind})
	require.NoError(t, err)
	c.Drop(Invalidation{Entity: EntityRun, TenantID: "tnt_a", ID: id})
	fifth, err := c.GetRun(ctx, "tnt_a", id)
	require.NoError(t, err)
	require.Equal(t, "by another replica", fifth.Output.Text)

	// Tenancy holds: another tenant's run id is not found.
	_, err = c.GetRun(ctx, "tnt_b", id)
	require.ErrorIs(t, err, errs.ErrNotFound)
}

// The cache stays bounded however many finished runs are read.
func TestRunCacheIsBounded(t *testing.T) {
	t.Parallel()
	c := New(nil, time.Hour)
	for i := range maxRuns + 10 {
		c.mu.Lock()
		c.putRun(runKey{"tnt_a", fmt.Sprint(i)}, store.Run{})
		c.mu.Unlock()
	}
	require.Len(t, c.runs, maxRuns)
}
