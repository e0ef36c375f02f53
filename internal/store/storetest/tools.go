package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func newToolDef(tenantID, toolID string) store.ToolDef {
	return store.ToolDef{
		TenantID:    tenantID,
		ToolID:      toolID,
		Name:        "Tool " + toolID,
		Description: "looks things up",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}`),
		Kind:        store.ToolKindWebhook,
		URL:         "https://hooks.example.com/" + toolID,
		Secret:      "s3cret-shared-with-the-webhook",
		Idempotent:  true,
		TimeoutMs:   5000,
		CreatedAt:   at(0),
		UpdatedAt:   at(time.Second),
	}
}

func testTools(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("PutGetList", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t2, t1, b1 := newToolDef("ten_a", "tool.zeta"), newToolDef("ten_a", "tool.alpha"), newToolDef("ten_b", "tool.alpha")
		b1.Name, b1.Idempotent = "B's tool", false
		for _, d := range []store.ToolDef{t2, t1, b1} {
			require.NoError(t, s.PutTool(ctx, d))
		}
		got, err := s.GetTool(ctx, "ten_a", "tool.alpha")
		require.NoError(t, err)
		require.Equal(t, t1, got)
		got, err = s.GetTool(ctx, "ten_b", "tool.alpha")
		require.NoError(t, err)
		require.Equal(t, b1, got)
		list, err := s.ListTools(ctx, "ten_a")
		require.NoError(t, err)
		require.Equal(t, []store.ToolDef{t1, t2}, list)
	})

	t.Run("WrongTenantNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.PutTool(ctx, newToolDef("ten_a", "tool.alpha")))
		_, err := s.GetTool(ctx, "ten_b", "tool.alpha")
		requireCode(t, err, errs.ErrNotFound)
		list, err := s.ListTools(ctx, "ten_b")
		require.NoError(t, err)
		require.Empty(t, list)
		requireCode(t, s.DeleteTool(ctx, "ten_b", "tool.alpha"), errs.ErrNotFound)
		_, err = s.GetTool(ctx, "ten_a", "tool.alpha")
		require.NoError(t, err, "a delete in another tenant removed nothing")
	})

	t.Run("PutReplacesKeepsCreatedAt", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		d := newToolDef("ten_a", "tool.alpha")
		require.NoError(t, s.PutTool(ctx, d))
		upd := d
		upd.Name, upd.Description, upd.URL, upd.Secret = "renamed", "", "http://10.0.0.1:8080/hook", "another-secret-value"
		upd.InputSchema = json.RawMessage(`{"type":"object"}`)
		upd.Idempotent, upd.TimeoutMs = false, 300000
		upd.CreatedAt, upd.UpdatedAt = at(time.Hour), at(2*time.Hour)
		require.NoError(t, s.PutTool(ctx, upd))
		got, err := s.GetTool(ctx, "ten_a", "tool.alpha")
		require.NoError(t, err)
		want := upd
		want.CreatedAt = d.CreatedAt
		require.Equal(t, want, got)
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.PutTool(ctx, newToolDef("ten_a", "tool.alpha")))
		require.NoError(t, s.PutTool(ctx, newToolDef("ten_a", "tool.beta")))
		require.NoError(t, s.DeleteTool(ctx, "ten_a", "tool.alpha"))
		_, err := s.GetTool(ctx, "ten_a", "tool.alpha")
		requireCode(t, err, errs.ErrNotFound)
		requireCode(t, s.DeleteTool(ctx, "ten_a", "tool.alpha"), errs.ErrNotFound)
		list, err := s.ListTools(ctx, "ten_a")
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, "tool.beta", list[0].ToolID)
	})

	t.Run("UnknownIsNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		_, err := s.GetTool(ctx, "ten_a", "tool.missing")
		requireCode(t, err, errs.ErrNotFound)
		requireCode(t, s.DeleteTool(ctx, "ten_a", "tool.missing"), errs.ErrNotFound)
		list, err := s.ListTools(ctx, "ten_a")
		require.NoError(t, err)
		require.Empty(t, list)
	})
}
