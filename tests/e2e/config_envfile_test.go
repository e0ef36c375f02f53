package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestSettingsOnlyInEnvFileTakeEffect starts a real prod orchestrator whose
// every setting is in its .agentos.env (its environment holds no AGENTOS_*
// variable at all), including the ones services used to read with
// os.Getenv alone: the node key file (prod generates no key, so the
// service only starts if it reads the provisioned one), the bootstrap
// admin token's _FILE form (the admin API accepts that token) and pprof.
func TestSettingsOnlyInEnvFileTakeEffect(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin := testnode.Binary(t)
	dir, secrets := t.TempDir(), t.TempDir()
	home := filepath.Join(dir, "home")
	keyFile := filepath.Join(secrets, "node.pem")
	_, err := auth.LoadOrCreateNodeKey(keyFile, true)
	require.NoError(t, err)
	const token = "agb_envfile_0123456789abcdef0123456789abcdef"
	tokenFile := filepath.Join(secrets, "bootstrap.token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	addr := testnode.FreeAddr(t)
	envFile := filepath.Join(dir, ".agentos.env")
	require.NoError(t, os.WriteFile(envFile, []byte(strings.Join([]string{
		"# every setting of this node",
		"AGENTOS_MODE=prod",
		"AGENTOS_HOME=" + home,
		"AGENTOS_STACK_ID=stk_envfile",
		"AGENTOS_ORCHESTRATOR_ADDR=" + addr,
		"AGENTOS_MODEL_POLICY_ADDR=" + testnode.FreeAddr(t),
		"AGENTOS_LOG_LEVEL=warn",
		"AGENTOS_NODE_KEY_FILE=" + keyFile,
		"AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE=" + tokenFile,
		"AGENTOS_PPROF=1",
	}, "\n")+"\n"), 0o600))

	logPath := filepath.Join(dir, "orchestrator.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	defer logf.Close()
	// The working directory's .agentos.env is the default env file; the
	// environment is empty so that the developer's cannot help.
	cmd := exec.Command(bin, "serve", "orchestrator")
	cmd.Dir, cmd.Env = dir, []string{}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	log := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	base := "http://" + addr
	exited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	require.Eventually(t, func() bool {
		if exited() {
			return true // reported below
		}
		resp, err := http.Get(base + "/v1/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "not healthy")
	require.False(t, exited(), "the orchestrator exited during startup:\n%s", log())

	require.NoFileExists(t, filepath.Join(home, "keys", "node_ed25519.pem"), "prod used the configured node key")

	code, _, body := fedDo(t, nil, "GET", base+"/v1/admin/tenants", map[string]string{"Authorization": "Bearer " + token}, nil)
	require.Equal(t, http.StatusOK, code, "the bootstrap token from the env file's _FILE setting: %s\n%s", body, log())
	code, _, body = fedDo(t, nil, "GET", base+"/v1/admin/tenants", map[string]string{"Authorization": "Bearer agb_not_the_token_0123456789abcdef0123"}, nil)
	require.Equal(t, http.StatusUnauthorized, code, string(body))

	code, _, body = fedDo(t, nil, "GET", base+"/debug/pprof/", nil, nil)
	require.Equal(t, http.StatusOK, code, "AGENTOS_PPROF=1 from the env file: %s", body)
}
