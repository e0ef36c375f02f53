package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/config"
)

// TestServeConfigFlagIsAFlag: model-policy's --config sets the catalogue
// at flag precedence, over the env file, in the config.Config the service
// gets (it used to os.Setenv it; noenv_test.go keeps os.Setenv out).
func TestServeConfigFlagIsAFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	envFile := filepath.Join(dir, ".agentos.env")
	require.NoError(t, os.WriteFile(envFile, []byte("AGENTOS_MODEL_POLICY_CONFIG=from-file.yaml\n"), 0o600))
	run := func(args ...string) config.Config {
		t.Helper()
		var got config.Config
		cmd := serviceCmd("model-policy", "test", func(c *config.Config, addr string) { c.ModelPolicyAddr = addr },
			func(_ context.Context, cfg config.Config) error { got = cfg; return nil }, catalogueFlag)
		cmd.SetArgs(append([]string{"--env-file", envFile, "--home", dir}, args...))
		require.NoError(t, cmd.ExecuteContext(context.Background()))
		return got
	}
	got := run("--config", "flag.yaml", "--addr", "127.0.0.1:52101")
	require.Equal(t, "flag.yaml", got.ModelPolicyConfig, "the flag beats the env file")
	require.Equal(t, "127.0.0.1:52101", got.ModelPolicyAddr)
}
