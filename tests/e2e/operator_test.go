package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestOperatorLifecycle is the operator issue's "done when": up, validate,
// run, status, redeploy (a run made before survives), validate, model-policy
// killed (validate fails naming it, up restores it), nuke --hard, and every
// report exists and parses.
func TestOperatorLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	t.Parallel()
	n := opNewNode(t)
	if out, _ := n.run("serve", "--help"); !strings.Contains(out, "  model-policy ") {
		t.Fatalf("this build has no `agentos serve model-policy`, so no node can come up:\n%s", out)
	}

	out, code := n.run("up")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "services healthy")
	require.Contains(t, out, "AgentOS node")
	require.FileExists(t, filepath.Join(n.dir, ".agentos.env"))

	// Idempotent: nothing restarted.
	pidBefore := opReadPID(t, n, "orchestrator")
	out, code = n.run("up")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "left running")
	require.Equal(t, pidBefore, opReadPID(t, n, "orchestrator"))

	out, code = n.run("validate")
	require.Equal(t, 0, code, out)

	out, code = n.run("run", "agt_sample_echo_v1", "hello", "--json")
	require.Equal(t, 0, code, out)
	var runID string
	var sawTerminal bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var obj struct {
			Run *struct {
				RunID string `json:"run_id"`
			} `json:"run"`
			Event *struct {
				Type string `json:"type"`
			} `json:"event"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &obj), line)
		if obj.Run != nil {
			runID = obj.Run.RunID
		}
		if obj.Event != nil && obj.Event.Type == "agentos.run.completed" {
			sawTerminal = true
		}
	}
	require.NotEmpty(t, runID)
	require.True(t, sawTerminal, out)

	out, code = n.run("run", "agt_sample_echo_v1", "hello again")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "completed:")

	out, code = n.run("status")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "orchestrator")
	require.Contains(t, out, "model-policy")
	require.Contains(t, out, "healthy")

	out, code = n.run("redeploy")
	require.Equal(t, 0, code, out)
	require.NotEqual(t, pidBefore, opReadPID(t, n, "orchestrator"), "redeploy restarts the orchestrator")
	require.Equal(t, http.StatusOK, opGetRun(t, n, runID), "a run created before redeploy is still there")

	out, code = n.run("validate")
	require.Equal(t, 0, code, out)

	// model-policy down: validate names it and fails; up brings it back.
	mp := opReadPID(t, n, "model-policy")
	require.NoError(t, syscall.Kill(mp, syscall.SIGKILL))
	require.Eventually(t, func() bool {
		_, err := http.Get("http://" + n.modelPolicy + "/v1/health")
		return err != nil
	}, 10*time.Second, 50*time.Millisecond)
	out, code = n.run("validate")
	require.NotEqual(t, 0, code, out)
	require.Contains(t, out, "model-policy")
	out, code = n.run("up")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "restarted")
	out, code = n.run("validate")
	require.Equal(t, 0, code, out)

	out, code = n.run("logs", "orchestrator", "--tail", "5")
	require.Equal(t, 0, code, out)

	// Plain nuke stops the node and keeps its data; --hard without a
	// terminal and without --yes refuses and removes nothing.
	out, code = n.run("nuke")
	require.Equal(t, 0, code, out)
	_, err := http.Get("http://" + n.orchestrator + "/v1/health")
	require.Error(t, err, "nothing answers after nuke")
	require.DirExists(t, filepath.Join(n.home(), "data"), "plain nuke keeps data")
	out, code = n.run("nuke", "--hard")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "pass --yes")
	require.DirExists(t, filepath.Join(n.home(), "data"))
	out, code = n.run("nuke", "--hard", "--yes")
	require.Equal(t, 0, code, out)
	require.NoDirExists(t, filepath.Join(n.home(), "data"))
	_, err = http.Get("http://" + n.orchestrator + "/v1/health")
	require.Error(t, err, "nothing answers after nuke")

	reports, err := filepath.Glob(filepath.Join(n.home(), "reports", "*.json"))
	require.NoError(t, err)
	seen := map[string]int{}
	for _, p := range reports {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		var r struct {
			SchemaVersion int    `json:"schema_version"`
			Action        string `json:"action"`
			OK            bool   `json:"ok"`
			Smoke         []any  `json:"smoke"`
		}
		require.NoError(t, json.Unmarshal(b, &r), p)
		require.Equal(t, 1, r.SchemaVersion)
		require.FileExists(t, strings.TrimSuffix(p, ".json")+".md")
		seen[r.Action]++
	}
	require.GreaterOrEqual(t, seen["up"], 3)
	require.GreaterOrEqual(t, seen["validate"], 4)
	require.Equal(t, 1, seen["redeploy"])
	require.Equal(t, 2, seen["nuke"], "plain nuke and nuke --hard --yes (a refused one writes none)")
}

func opReadPID(t *testing.T, n *opNode, service string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.home(), "run", service+".pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return pid
}

// opGetRun fetches a run with the tenant admin token from credentials.json.
func opGetRun(t *testing.T, n *opNode, runID string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.home(), "credentials.json"))
	require.NoError(t, err)
	var creds struct {
		TenantAdmin struct {
			Token string `json:"token"`
		} `json:"tenant_admin"`
	}
	require.NoError(t, json.Unmarshal(b, &creds))
	req, err := http.NewRequest(http.MethodGet, "http://"+n.orchestrator+"/v1/runs/"+runID, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+creds.TenantAdmin.Token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}
