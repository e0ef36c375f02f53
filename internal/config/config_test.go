package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func lookupFrom(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPrecedenceAndDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	envFile := filepath.Join(dir, ".agentos.env")
	require.NoError(t, os.WriteFile(envFile, []byte(`# generated
AGENTOS_MODE=dev
export AGENTOS_ORCHESTRATOR_ADDR="127.0.0.1:6001"
AGENTOS_REGION='eu'
`), 0o600))
	c, err := Load(lookupFrom(map[string]string{"AGENTOS_ORCHESTRATOR_ADDR": "127.0.0.1:7001", "AGENTOS_HOME": dir}), envFile)
	require.NoError(t, err)
	require.NoError(t, c.Finish())
	require.Equal(t, "dev", c.Mode, "from the env file")
	require.Equal(t, "127.0.0.1:7001", c.OrchestratorAddr, "env overrides the file")
	require.Equal(t, "eu", c.Region)
	require.Equal(t, "http://127.0.0.1:7001", c.OrchestratorURL)
	require.Equal(t, filepath.Join(dir, "data"), c.DataDir)
	require.Equal(t, "sqlite://"+filepath.Join(dir, "data", "agentos.db"), c.StoreURL)
	require.Equal(t, "http://127.0.0.1:50083", c.FederationURL)
	require.Equal(t, 128, c.Executors)
	require.Equal(t, 10.0, c.QuotaRunCreateQPS)
	require.Equal(t, 100, c.QuotaMaxStreams)
	require.Equal(t, 0, c.MaxStreams, "derived from the fd limit at start")
	require.Equal(t, 10*time.Second, c.HTTPReadHeaderTimeout)
	require.Equal(t, 30*time.Second, c.HTTPBodyTimeout)
	require.Equal(t, 120*time.Second, c.HTTPIdleTimeout)
	require.Equal(t, 64<<10, c.HTTPMaxHeaderBytes)
	require.Equal(t, time.Minute, c.AuditCheckpointInterval)
	require.Equal(t, filepath.Join(dir, "data", "audit-checkpoints.jsonl"), c.AuditCheckpointFile)
	require.True(t, c.DevMode())
}

func TestServerLimitSettings(t *testing.T) {
	t.Parallel()
	none := filepath.Join(t.TempDir(), "none")
	c, err := Load(lookupFrom(map[string]string{"AGENTOS_HTTP_READ_HEADER_TIMEOUT": "1500ms",
		"AGENTOS_MAX_STREAMS": "7", "AGENTOS_QUOTA_MAX_STREAMS": "3"}), none)
	require.NoError(t, err)
	require.Equal(t, 1500*time.Millisecond, c.HTTPReadHeaderTimeout)
	require.Equal(t, 7, c.MaxStreams)
	require.Equal(t, 3, c.QuotaMaxStreams)
	_, err = Load(lookupFrom(map[string]string{"AGENTOS_HTTP_BODY_TIMEOUT": "0s"}), none)
	require.ErrorContains(t, err, "AGENTOS_HTTP_BODY_TIMEOUT")
	_, err = Load(lookupFrom(map[string]string{"AGENTOS_MAX_STREAMS": "-1"}), none)
	require.ErrorContains(t, err, "AGENTOS_MAX_STREAMS")
}

func TestOutboundTimeoutSettings(t *testing.T) {
	t.Parallel()
	none := filepath.Join(t.TempDir(), "none")
	c, err := Load(lookupFrom(map[string]string{"AGENTOS_OUTBOUND_RESPONSE_HEADER_TIMEOUT": "250ms"}), none)
	require.NoError(t, err)
	require.Equal(t, 250*time.Millisecond, c.OutboundResponseHeaderTimeout)
	require.Equal(t, 3*time.Second, c.OutboundDialTimeout)
	require.Equal(t, 4*time.Second, c.OutboundTLSHandshakeTimeout)
	require.Equal(t, 5*time.Minute, c.OutboundModelResponseHeaderTimeout)
	require.Equal(t, 90*time.Second, c.OutboundIdleConnTimeout)
	_, err = Load(lookupFrom(map[string]string{"AGENTOS_OUTBOUND_DIAL_TIMEOUT": "soon"}), none)
	require.ErrorContains(t, err, "AGENTOS_OUTBOUND_DIAL_TIMEOUT")

	zero := Config{Mode: ModeDev} // built in code: Finish gives the documented defaults
	require.NoError(t, zero.Finish())
	require.Equal(t, 30*time.Second, zero.OutboundResponseHeaderTimeout)
	require.Equal(t, 5*time.Minute, zero.OutboundModelResponseHeaderTimeout)
}

func TestAuditCheckpointSettings(t *testing.T) {
	t.Parallel()
	none := filepath.Join(t.TempDir(), "none")
	c, err := Load(lookupFrom(map[string]string{"AGENTOS_AUDIT_CHECKPOINT_INTERVAL": "0", "AGENTOS_AUDIT_CHECKPOINT_FILE": "/safe/cp.jsonl"}), none)
	require.NoError(t, err)
	require.NoError(t, c.Finish())
	require.Zero(t, c.AuditCheckpointInterval, "0 disables the writer")
	require.Equal(t, "/safe/cp.jsonl", c.AuditCheckpointFile)
	c, err = Load(lookupFrom(map[string]string{"AGENTOS_AUDIT_CHECKPOINT_INTERVAL": "15s"}), none)
	require.NoError(t, err)
	require.Equal(t, 15*time.Second, c.AuditCheckpointInterval)
	for _, v := range []string{"soon", "-1m", "10ms"} {
		_, err = Load(lookupFrom(map[string]string{"AGENTOS_AUDIT_CHECKPOINT_INTERVAL": v}), none)
		require.ErrorContains(t, err, "AGENTOS_AUDIT_CHECKPOINT_INTERVAL", v)
	}
}

func TestProdDefaultsAndErrors(t *testing.T) {
	t.Parallel()
	c, err := Load(lookupFrom(map[string]string{"AGENTOS_MODE": "prod"}), filepath.Join(t.TempDir(), "none"))
	require.NoError(t, err)
	require.NoError(t, c.Finish())
	require.Equal(t, "https://127.0.0.1:50083", c.FederationURL, "the federation client API is TLS in prod")
	require.False(t, c.DevMode())

	_, err = Load(lookupFrom(map[string]string{"AGENTOS_QUOTA_RUN_CREATE_QPS": "lots"}), filepath.Join(t.TempDir(), "none"))
	require.ErrorContains(t, err, "AGENTOS_QUOTA_RUN_CREATE_QPS")
	c, err = Load(lookupFrom(map[string]string{"AGENTOS_MODE": "staging"}), filepath.Join(t.TempDir(), "none"))
	require.NoError(t, err)
	require.ErrorContains(t, c.Finish(), "staging")

	bad := filepath.Join(t.TempDir(), "bad.env")
	require.NoError(t, os.WriteFile(bad, []byte("NOT A PAIR\n"), 0o600))
	_, err = Load(lookupFrom(nil), bad)
	require.ErrorContains(t, err, "bad.env:1")
}

func FuzzReadEnvFile(f *testing.F) {
	f.Add("A=1\n# c\nexport B=\"x y\"\n")
	f.Add("=\n'\"\n")
	f.Fuzz(func(t *testing.T, content string) {
		p := filepath.Join(t.TempDir(), "f.env")
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		_, _ = ReadEnvFile(p)
	})
}
