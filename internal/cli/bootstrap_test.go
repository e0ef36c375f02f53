package cli

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/supervisor"
)

func TestBootstrapProd(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	cfg, err := config.Load(func(string) (string, bool) { return "", false }, filepath.Join(home, "none.env"))
	require.NoError(t, err)
	cfg.Home, cfg.Mode = home, config.ModeProd
	mp := httptest.NewServer(newFakeModelPolicy())
	defer mp.Close()

	// A too-short token in the secrets file is refused before any call.
	secret := filepath.Join(home, "secrets", "bootstrap-admin.token")
	require.NoError(t, os.MkdirAll(filepath.Dir(secret), 0o700))
	require.NoError(t, os.WriteFile(secret, []byte("short\n"), 0o600))
	cfg.OrchestratorURL, cfg.ModelPolicyURL = "http://127.0.0.1:1", mp.URL
	require.NoError(t, cfg.Finish())
	n, err := supervisor.New(cfg, "", map[string]bool{"orchestrator": true, "model-policy": true})
	require.NoError(t, err)
	var out bytes.Buffer
	err = runBootstrap(context.Background(), &out, n, "tnt_acme", "Acme", true, false)
	require.ErrorContains(t, err, "at least 32 characters")

	require.NoError(t, os.WriteFile(secret, []byte("agb_0123456789abcdef0123456789abcdef\n"), 0o600))
	f, err := newFakeOrchestrator(home, mp.URL, true)
	require.NoError(t, err)
	srv := httptest.NewServer(f)
	defer srv.Close()
	n.Cfg.OrchestratorURL = srv.URL
	for i := range n.Services {
		if n.Services[i].Name == "orchestrator" {
			n.Services[i].URL = srv.URL
		}
	}
	require.NoError(t, runBootstrap(context.Background(), &out, n, "tnt_acme", "Acme", true, false), out.String())
	require.Contains(t, out.String(), "[5/5] credentials")
	creds, err := loadCredentials(n.Cfg.CredentialsFile())
	require.NoError(t, err)
	require.Equal(t, "tnt_acme", creds.TenantID)
	require.Equal(t, "usr_tnt_acme_admin", creds.TenantAdmin.PrincipalID)
	require.NotEmpty(t, creds.TenantAdmin.Token)
	require.NotEmpty(t, creds.PlatformAdmin.Token)
	st, err := os.Stat(n.Cfg.CredentialsFile())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// Running it again reuses the tenant.
	out.Reset()
	require.NoError(t, runBootstrap(context.Background(), &out, n, "tnt_acme", "Acme", true, false))
	require.Contains(t, out.String(), "exists already")

	// The child environment hands the bootstrap token file to the orchestrator.
	found := false
	for _, kv := range n.ChildEnv() {
		if kv == "AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE="+secret {
			found = true
		}
	}
	require.True(t, found, "no bootstrap token is configured, so the children get the secrets file")
}
