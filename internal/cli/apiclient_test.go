package cli

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func TestClientAgainstFakeOrchestrator(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	mp := httptest.NewServer(newFakeModelPolicy())
	defer mp.Close()
	f, err := newFakeOrchestrator(home, mp.URL, false)
	require.NoError(t, err)
	srv := httptest.NewServer(f)
	defer srv.Close()
	creds, err := loadCredentials(home + "/credentials.json")
	require.NoError(t, err)
	ctx := context.Background()

	tenant := &apiclient.Client{BaseURL: srv.URL, PolicyURL: mp.URL, Token: creds.TenantAdmin.Token}
	run, err := tenant.CreateRun(ctx, sampleAgentID, "hello", nil)
	require.NoError(t, err)
	var types []string
	require.NoError(t, tenant.StreamEvents(ctx, run.RunID, 0, func(ev store.Event) error { types = append(types, ev.Type); return nil }))
	require.Equal(t, store.EventRunCompleted, types[len(types)-1])
	evs, err := tenant.ListEvents(ctx, run.RunID)
	require.NoError(t, err)
	require.Len(t, evs, len(types))
	pr, err := tenant.PolicyCheck(ctx, "req_1", "mail a@b.c")
	require.NoError(t, err)
	require.Equal(t, "redacted", pr.Decision)
	models, err := tenant.ListModels(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, models)

	// The tenant admin is not a platform admin.
	_, err = tenant.ListTenants(ctx)
	require.True(t, errors.Is(err, errs.ErrForbidden))

	admin := &apiclient.Client{BaseURL: srv.URL, Token: creds.PlatformAdmin.Token}
	_, err = admin.CreateTenant(ctx, map[string]any{"tenant_id": "tnt_b", "name": "B"})
	require.NoError(t, err)
	tok, err := admin.IssueToken(ctx, "tnt_b", apiclient.TokenRequest{PrincipalID: "usr_b"})
	require.NoError(t, err)
	other := &apiclient.Client{BaseURL: srv.URL, Token: tok.Secret}
	_, err = other.GetRun(ctx, run.RunID)
	require.True(t, errors.Is(err, errs.ErrNotFound))
	require.NoError(t, admin.RevokeToken(ctx, "tnt_b", tok.TokenID))
	_, err = other.GetRun(ctx, run.RunID)
	require.True(t, errors.Is(err, errs.ErrUnauthorized))

	m, err := apiclient.Metrics(ctx, nil, srv.URL)
	require.NoError(t, err)
	require.Equal(t, 1.0, m["agentos_runs_total"])
}

func TestIncreasedCounter(t *testing.T) {
	t.Parallel()
	name, ok := increasedCounter(map[string]float64{"agentos_a_total": 1}, map[string]float64{"agentos_a_total": 2, "go_x": 9})
	require.True(t, ok)
	require.Equal(t, "agentos_a_total", name)
	_, ok = increasedCounter(map[string]float64{"agentos_a_total": 2}, map[string]float64{"agentos_a_total": 2})
	require.False(t, ok)
}
