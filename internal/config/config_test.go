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
	require.Equal(t, "127.0.0.1:50080", c.GatewayAddr)
	require.Empty(t, c.GatewayUpstreamsFile)
	require.Equal(t, 2*time.Second, c.GatewayHealthInterval)
	require.True(t, c.DevMode())
}

func TestGatewaySettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	envFile := filepath.Join(dir, ".agentos.env")
	require.NoError(t, os.WriteFile(envFile, []byte("AGENTOS_GATEWAY_UPSTREAMS_FILE=/etc/agentos/upstreams.yaml\n"), 0o600))
	c, err := Load(lookupFrom(map[string]string{"AGENTOS_GATEWAY_ADDR": "127.0.0.1:52880",
		"AGENTOS_GATEWAY_HEALTH_INTERVAL": "250ms"}), envFile)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:52880", c.GatewayAddr)
	require.Equal(t, "/etc/agentos/upstreams.yaml", c.GatewayUpstreamsFile, "from .agentos.env")
	require.Equal(t, 250*time.Millisecond, c.GatewayHealthInterval)
	_, err = Load(lookupFrom(map[string]string{"AGENTOS_GATEWAY_HEALTH_INTERVAL": "often"}), envFile)
	require.ErrorContains(t, err, "AGENTOS_GATEWAY_HEALTH_INTERVAL")
}

func TestRunLeaseTTLSetting(t *testing.T) {
	t.Parallel()
	none := filepath.Join(t.TempDir(), "none")
	c, err := Load(lookupFrom(nil), none)
	require.NoError(t, err)
	require.Equal(t, 6*time.Second, c.RunLeaseTTL)
	c, err = Load(lookupFrom(map[string]string{"AGENTOS_RUN_LEASE_TTL": "3s"}), none)
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, c.RunLeaseTTL)
	for _, bad := range []string{"500ms", "0s", "soon"} {
		_, err = Load(lookupFrom(map[string]string{"AGENTOS_RUN_LEASE_TTL": bad}), none)
		require.ErrorContains(t, err, "AGENTOS_RUN_LEASE_TTL", bad)
	}
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

func TestBusSettings(t *testing.T) {
	t.Parallel()
	none := filepath.Join(t.TempDir(), "none.env")
	c, err := Load(lookupFrom(nil), none)
	require.NoError(t, err)
	require.Empty(t, c.BusURL, "default: the in-process bus")
	require.Equal(t, 1, c.BusReplicas)
	c, err = Load(lookupFrom(map[string]string{"AGENTOS_BUS_URL": "nats://127.0.0.1:4222,nats://127.0.0.1:4223", "AGENTOS_BUS_REPLICAS": "3"}), none)
	require.NoError(t, err)
	require.Equal(t, "nats://127.0.0.1:4222,nats://127.0.0.1:4223", c.BusURL)
	require.Equal(t, 3, c.BusReplicas)
	for k, v := range map[string]string{"AGENTOS_BUS_URL": "redis://127.0.0.1:6379", "AGENTOS_BUS_REPLICAS": "0"} {
		_, err = Load(lookupFrom(map[string]string{k: v}), none)
		require.ErrorContains(t, err, k, v)
	}
	for _, v := range []string{"6", "three"} {
		_, err = Load(lookupFrom(map[string]string{"AGENTOS_BUS_REPLICAS": v}), none)
		require.ErrorContains(t, err, "AGENTOS_BUS_REPLICAS", v)
	}
	_, err = Load(lookupFrom(map[string]string{"AGENTOS_BUS_URL": "nats://ok:4222,127.0.0.1:4223"}), none)
	require.ErrorContains(t, err, "AGENTOS_BUS_URL", "every URL of the list is checked")
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

// TestSecretFileForms: AGENTOS_X and AGENTOS_X_FILE are one setting; the
// first source setting either decides, the file is read by Load.
func TestSecretFileForms(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokFile, []byte("agb_from_file\r\n"), 0o600))
	pwFile := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte(" spaced pw \n"), 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	envFile := func(body string) string {
		p := filepath.Join(t.TempDir(), ".agentos.env")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}

	// Only in the env file.
	c, err := Load(lookupFrom(nil), envFile("AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE="+tokFile+"\nAGENTOS_ALERT_SMTP_PASSWORD_FILE="+pwFile+"\n"))
	require.NoError(t, err)
	require.Equal(t, "agb_from_file", c.BootstrapAdminToken, "the line ending is not part of the secret")
	require.Equal(t, " spaced pw ", c.AlertSMTPPassword, "only the line ending is dropped")

	// The environment's plain form beats the file's _FILE form, and the
	// other way round.
	c, err = Load(lookupFrom(map[string]string{"AGENTOS_BOOTSTRAP_ADMIN_TOKEN": "agb_env"}), envFile("AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE="+tokFile+"\n"))
	require.NoError(t, err)
	require.Equal(t, "agb_env", c.BootstrapAdminToken)
	c, err = Load(lookupFrom(map[string]string{"AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE": tokFile}), envFile("AGENTOS_BOOTSTRAP_ADMIN_TOKEN=agb_file_plain\n"))
	require.NoError(t, err)
	require.Equal(t, "agb_from_file", c.BootstrapAdminToken)

	for name, tc := range map[string]struct {
		env  map[string]string
		file string
		want string
	}{
		"both in the environment": {env: map[string]string{"AGENTOS_BOOTSTRAP_ADMIN_TOKEN": "a", "AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE": tokFile},
			want: "AGENTOS_BOOTSTRAP_ADMIN_TOKEN and AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE are both set in the environment"},
		"both in the env file": {file: "AGENTOS_ALERT_SMTP_PASSWORD=x\nAGENTOS_ALERT_SMTP_PASSWORD_FILE=" + pwFile + "\n",
			want: "AGENTOS_ALERT_SMTP_PASSWORD and AGENTOS_ALERT_SMTP_PASSWORD_FILE are both set in"},
		"missing file": {file: "AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE=" + filepath.Join(dir, "absent") + "\n",
			want: "AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE: open"},
		"empty file": {env: map[string]string{"AGENTOS_ALERT_SMTP_PASSWORD_FILE": empty},
			want: "AGENTOS_ALERT_SMTP_PASSWORD_FILE: " + empty + " is empty"},
	} {
		_, err := Load(lookupFrom(tc.env), envFile(tc.file))
		require.ErrorContains(t, err, tc.want, name)
	}
}

// TestSettingsOnceReadElsewhere: the settings services and the CLI used to
// read with os.Getenv load from the env file like every other.
func TestSettingsOnceReadElsewhere(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), ".agentos.env")
	require.NoError(t, os.WriteFile(p, []byte(`AGENTOS_NODE_KEY_FILE=/keys/node.pem
AGENTOS_PPROF=1
AGENTOS_NO_SPINNER=true
AGENTOS_TOKEN=agt_cli
AGENTOS_NODE_B_PORT_OFFSET=-20
AGENTOS_FEDERATION_CA_FILE=/fed/ca.pem
AGENTOS_FEDERATION_CERT_FILE=/fed/node.pem
AGENTOS_FEDERATION_KEY_FILE=/fed/node-key.pem
AGENTOS_FEDERATION_SIGNING_KEY_FILE=/fed/id.pem
AGENTOS_FEDERATION_PEERS_FILE=/fed/peers.yaml
AGENTOS_ALERT_SMTP_ADDR=smtp.example.com:587
AGENTOS_ALERT_FROM=a@example.com
AGENTOS_ALERT_TO=ops@example.com
AGENTOS_ALERT_SMTP_USERNAME=alerts
AGENTOS_ALERT_SMTP_STARTTLS=true
`), 0o600))
	c, err := Load(lookupFrom(map[string]string{"AGENTOS_PPROF": ""}), p)
	require.NoError(t, err)
	require.NoError(t, c.Finish())
	require.Equal(t, "/keys/node.pem", c.NodeKeyPath())
	require.True(t, c.Pprof, "an empty environment variable does not hide the file's value")
	require.True(t, c.NoSpinner)
	require.Equal(t, "agt_cli", c.Token)
	require.Equal(t, -20, c.NodeBPortOffset)
	require.Equal(t, []string{"/fed/ca.pem", "/fed/node.pem", "/fed/node-key.pem", "/fed/id.pem", "/fed/peers.yaml"},
		[]string{c.FederationCAFile, c.FederationCertFile, c.FederationKeyFile, c.FederationSigningKeyFile, c.FederationPeersFile})
	require.Equal(t, []string{"smtp.example.com:587", "a@example.com", "ops@example.com", "alerts", "true"},
		[]string{c.AlertSMTPAddr, c.AlertFrom, c.AlertTo, c.AlertSMTPUsername, c.AlertSMTPStartTLS})

	c, err = Load(lookupFrom(map[string]string{"AGENTOS_HOME": "/srv/agentos"}), filepath.Join(t.TempDir(), "none"))
	require.NoError(t, err)
	require.Equal(t, "/srv/agentos/keys/node_ed25519.pem", c.NodeKeyPath())
	require.False(t, c.Pprof)
	require.Zero(t, c.NodeBPortOffset)

	for key, v := range map[string]string{"AGENTOS_PPROF": "yes please", "AGENTOS_NO_SPINNER": "2", "AGENTOS_NODE_B_PORT_OFFSET": "ten"} {
		_, err := Load(lookupFrom(map[string]string{key: v}), filepath.Join(t.TempDir(), "none"))
		require.ErrorContains(t, err, key+"=")
	}
}
