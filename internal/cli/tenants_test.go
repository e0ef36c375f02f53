package cli

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// cliEnv is a fake orchestrator and model-policy with a home holding
// credentials.json, and a function running agentos commands against them.
func cliEnv(t *testing.T) func(args ...string) (string, int) {
	t.Helper()
	home := t.TempDir()
	mp := httptest.NewServer(newFakeModelPolicy())
	t.Cleanup(mp.Close)
	f, err := newFakeOrchestrator(home, mp.URL, false)
	require.NoError(t, err)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return func(args ...string) (string, int) {
		var out bytes.Buffer
		args = append(args, "--home", home, "--orchestrator-url", srv.URL, "--model-policy-url", mp.URL,
			"--env-file", filepath.Join(home, "none.env"))
		code := Main(args, &out, &out)
		return out.String(), code
	}
}

func TestTenantsTokensAgentsRunCommands(t *testing.T) {
	t.Parallel()
	run := cliEnv(t)

	out, code := run("tenants", "create", "tnt_acme", "--name", "Acme", "--max-concurrent-runs", "5")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "tnt_acme")

	out, code = run("tenants", "list", "--json")
	require.Equal(t, 0, code, out)
	var list struct {
		Tenants []struct {
			TenantID string `json:"tenant_id"`
		} `json:"tenants"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list.Tenants, 2)

	out, code = run("tenants", "update", "tnt_acme", "--plan-tier", "pro")
	require.Equal(t, 0, code, out)
	out, code = run("tenants", "get", "tnt_acme")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "pro")
	out, code = run("tenants", "update", "tnt_acme", "--max-concurrent-streams", "7", "--json")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, `"max_concurrent_streams": 7`)
	require.Contains(t, out, `"max_concurrent_runs": 5`, "quotas merge field by field")
	out, code = run("tenants", "update", "tnt_acme")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "nothing to update")
	out, code = run("tenants", "disable", "tnt_acme", "--json")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, `"status": "disabled"`)
	out, code = run("tenants", "get", "tnt_nope")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "not_found")

	out, code = run("tokens", "issue", "--tenant", "tnt_acme", "--principal", "usr_bob")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "secret:")
	tokenID := strings.Fields(strings.SplitN(out, "\n", 2)[0])[1]
	out, code = run("tokens", "revoke", "--tenant", "tnt_acme", tokenID)
	require.Equal(t, 0, code, out)
	out, code = run("tokens", "issue", "--principal", "usr_bob")
	require.Equal(t, 2, code, out)

	agentFile := filepath.Join(t.TempDir(), "agent.yaml")
	require.NoError(t, writeFile(agentFile, "agent_id: agt_mine\nname: Mine\nmodel_ref: tier:fast\ntools: [tool.echo]\n"))
	out, code = run("agents", "put", "-f", agentFile)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "agent agt_mine (tenant tnt_demo) version 1")
	out, code = run("agents", "list")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, sampleAgentID)

	out, code = run("run", sampleAgentID, "hello there")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "completed: hello there")
	require.Contains(t, out, "tool tool.echo ok")
	out, code = run("run", sampleAgentID, "hello there", "--tokens")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, `model output #0 "hello there"`)
	out, code = run("run", sampleAgentID, "hi", "--json")
	require.Equal(t, 0, code, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.GreaterOrEqual(t, len(lines), 3)
	for _, l := range lines {
		require.True(t, json.Valid([]byte(l)), l)
	}
	out, code = run("run", "agt_unknown", "hi")
	require.Equal(t, 1, code, out)
}
