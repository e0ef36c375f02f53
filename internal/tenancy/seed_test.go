package tenancy

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "agentos.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func seedConfig(t *testing.T, mode string) config.Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.Mode = mode
	cfg.Home = filepath.Join(t.TempDir(), "home", ".agentos")
	return cfg
}

func TestSeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openStore(t)
	cfg := seedConfig(t, config.ModeDemo)

	res, err := Seed(ctx, db, cfg)
	require.NoError(t, err)
	require.Equal(t, "tnt_demo", res.TenantID)
	require.ElementsMatch(t, []string{"tenant/tnt_demo", "token/usr_platform_admin", "token/usr_tnt_demo_admin",
		"credentials/" + cfg.CredentialsFile(), "agent/agt_sample_echo_v1", "agent/my-agent", "agent/agt_demo"}, res.Created)
	require.Empty(t, res.Kept)

	tn, err := db.GetTenant(ctx, "tnt_demo")
	require.NoError(t, err)
	require.Equal(t, DemoTenantName, tn.Name)
	require.Equal(t, DefaultQuotas(cfg), tn.Quotas)

	for _, id := range SeededAgentIDs {
		a, err := db.GetAgent(ctx, "tnt_demo", id)
		require.NoError(t, err)
		require.Equal(t, "tier:fast", a.ModelRef)
		require.Equal(t, []string{"tool.echo"}, a.Tools)
		require.Equal(t, EchoInstructions, a.Instructions)
		require.Equal(t, store.AgentDefaults{MaxSteps: 8, TimeoutMs: 60000}, a.Defaults)
		require.Equal(t, 1, a.Version)
		require.Equal(t, store.AgentActive, a.Status)
	}

	// Credentials file: 0600 in a 0700 dir, and its tokens authenticate.
	fi, err := os.Stat(cfg.CredentialsFile())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(filepath.Dir(cfg.CredentialsFile()))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), di.Mode().Perm())
	raw, err := os.ReadFile(cfg.CredentialsFile())
	require.NoError(t, err)
	var generic map[string]any
	require.NoError(t, json.Unmarshal(raw, &generic))
	for _, k := range []string{"tenant_id", "platform_admin", "tenant_admin", "created_at"} {
		require.Contains(t, generic, k)
	}
	creds, err := ReadCredentials(cfg.CredentialsFile())
	require.NoError(t, err)
	require.Equal(t, res.Credentials, creds)

	a, err := auth.New(auth.Config{Mode: cfg.Mode, Tenants: db, Tokens: db})
	require.NoError(t, err)
	check := func(secret, principal, role string, admin bool) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+secret)
		ac, err := a.Authenticate(r)
		require.NoError(t, err)
		require.Equal(t, principal, ac.Principal.PrincipalID)
		require.Equal(t, "tnt_demo", ac.TenantID)
		require.True(t, ac.HasRole(role))
		require.True(t, ac.HasScope(auth.ScopeAdmin))
		require.Equal(t, admin, ac.IsAdminOf("tnt_other"))
	}
	check(creds.PlatformAdmin.Token, "usr_platform_admin", auth.RolePlatformAdmin, true)
	check(creds.TenantAdmin.Token, "usr_tnt_demo_admin", auth.RoleTenantAdmin, false)

	// Second run: everything kept, no new tokens.
	res2, err := Seed(ctx, db, cfg)
	require.NoError(t, err)
	require.Empty(t, res2.Created)
	require.Len(t, res2.Kept, 7)
	require.Equal(t, creds, res2.Credentials)
	toks, err := db.ListTokens(ctx, "tnt_demo")
	require.NoError(t, err)
	require.Len(t, toks, 2)

	// A revoked token is replaced; the other one is kept.
	require.NoError(t, db.RevokeToken(ctx, "tnt_demo", creds.TenantAdmin.TokenID, time.Now()))
	res3, err := Seed(ctx, db, cfg)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"token/usr_tnt_demo_admin", "credentials/" + cfg.CredentialsFile()}, res3.Created)
	require.Equal(t, creds.PlatformAdmin, res3.Credentials.PlatformAdmin)
	require.NotEqual(t, creds.TenantAdmin.Token, res3.Credentials.TenantAdmin.Token)
	check(res3.Credentials.TenantAdmin.Token, "usr_tnt_demo_admin", auth.RoleTenantAdmin, false)

	// A deleted (or corrupt) credentials file gets new tokens.
	require.NoError(t, os.WriteFile(cfg.CredentialsFile(), []byte("{oops"), 0o600))
	res4, err := Seed(ctx, db, cfg)
	require.NoError(t, err)
	require.Contains(t, res4.Created, "token/usr_platform_admin")
	require.Contains(t, res4.Created, "token/usr_tnt_demo_admin")
}

func TestSeedKeepsExistingObjects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openStore(t)
	cfg := seedConfig(t, config.ModeDev)
	cfg.DefaultTenant = "tnt_custom"
	tn := NewTenant("tnt_custom", "Mine", cfg)
	tn.Status = store.TenantDisabled
	require.NoError(t, db.CreateTenant(ctx, tn))
	custom := EchoAgent("tnt_custom", "my-agent")
	custom.Instructions = "custom"
	require.NoError(t, db.PutAgent(ctx, custom))

	res, err := Seed(ctx, db, cfg)
	require.NoError(t, err)
	require.Contains(t, res.Kept, "tenant/tnt_custom")
	require.Contains(t, res.Kept, "agent/my-agent")
	require.Contains(t, res.Created, "agent/agt_demo")
	require.Contains(t, res.Created, "token/usr_tnt_custom_admin")

	got, err := db.GetTenant(ctx, "tnt_custom")
	require.NoError(t, err)
	require.Equal(t, "Mine", got.Name)
	require.Equal(t, store.TenantDisabled, got.Status)
	a, err := db.GetAgent(ctx, "tnt_custom", "my-agent")
	require.NoError(t, err)
	require.Equal(t, "custom", a.Instructions)
}

func TestSeedProdSeedsNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openStore(t)
	cfg := seedConfig(t, config.ModeProd)
	res, err := Seed(ctx, db, cfg)
	require.NoError(t, err)
	require.NotEmpty(t, res.Skipped)
	require.Empty(t, res.Created)
	tenants, err := db.ListTenants(ctx)
	require.NoError(t, err)
	require.Empty(t, tenants)
	_, err = os.Stat(cfg.CredentialsFile())
	require.True(t, os.IsNotExist(err))
}
