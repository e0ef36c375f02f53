package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/supervisor"
)

// upOnce runs the up phases and writes the report like the command does.
func upOnce(t *testing.T, n *supervisor.Node, action string, restartAll bool) (*Report, string, error) {
	t.Helper()
	var out bytes.Buffer
	p := NewProgress(&out, false)
	rep := newReport(action, n, "local")
	err := up(context.Background(), n, p, rep, upOptions{profile: "local", bootTimeout: 30 * time.Second}, restartAll, "")
	err = finishReport(&out, n, rep, p, err)
	return rep, out.String(), err
}

func validateOnce(t *testing.T, n *supervisor.Node) (*Report, string, error) {
	t.Helper()
	var out bytes.Buffer
	p := NewProgress(&out, false)
	rep := newReport("validate", n, "local")
	err := (&validator{n: n, p: p, rep: rep}).run(context.Background())
	err = finishReport(&out, n, rep, p, err)
	return rep, out.String(), err
}

func readReport(t *testing.T, path string) Report {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var r Report
	require.NoError(t, json.Unmarshal(b, &r))
	return r
}

func TestUpValidateRedeployNukeAgainstFakeServices(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)

	rep, out, err := upOnce(t, n, "up", false)
	require.NoError(t, err, out)
	for _, phase := range []string{"==> preflight", "==> boot", "==> seed", "==> wire", "==> validate", "services healthy 2/2", "seeded objects present 4/4", "smoke tests passed 8/8", "probe tenant ready", "tnt_agentos_probe", "Product API:", "Credentials:"} {
		require.Contains(t, out, phase)
	}
	require.True(t, rep.OK)
	require.Len(t, rep.Services, 2)
	for _, s := range rep.Services {
		require.Equal(t, "started", s.Action)
	}
	js := readReport(t, rep.Reports.JSON)
	require.Equal(t, ReportSchemaVersion, js.SchemaVersion)
	require.Equal(t, "up", js.Action)
	require.True(t, js.OK)
	require.Len(t, js.Smoke, 8)
	require.Equal(t, []string{"tnt_demo"}, js.Seeded.Tenants)
	require.FileExists(t, rep.Reports.Markdown)
	st, err := os.Stat(n.Cfg.CredentialsFile())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// Idempotent: a second up leaves both services alone.
	pids := map[string]int{}
	for _, s := range rep.Services {
		pids[s.Name] = s.PID
	}
	rep2, out, err := upOnce(t, n, "up", false)
	require.NoError(t, err, out)
	for _, s := range rep2.Services {
		require.Equal(t, "left running", s.Action)
		require.Equal(t, pids[s.Name], s.PID)
	}
	require.NotEqual(t, rep.Reports.JSON, rep2.Reports.JSON)

	// model-policy killed: validate fails naming it; up restarts it.
	mpPID, _ := n.ReadPID("model-policy")
	require.NoError(t, syscall.Kill(mpPID, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !supervisor.ProcessAlive(mpPID) }, 10*time.Second, 20*time.Millisecond)
	vrep, out, err := validateOnce(t, n)
	require.Error(t, err)
	require.Contains(t, err.Error(), "model-policy")
	require.Contains(t, out, "[service: model-policy]")
	require.Contains(t, out, "next: agentos up")
	require.False(t, vrep.OK)
	require.Equal(t, "model-policy", vrep.Failure.Service)
	require.NotEmpty(t, vrep.Failure.LogLines)

	rep3, out, err := upOnce(t, n, "up", false)
	require.NoError(t, err, out)
	actions := map[string]string{}
	for _, s := range rep3.Services {
		actions[s.Name] = s.Action
	}
	require.Equal(t, "restarted (stale pid file)", actions["model-policy"])
	require.Equal(t, "left running", actions["orchestrator"])

	// redeploy restarts everything and keeps credentials.
	credsBefore, err := os.ReadFile(n.Cfg.CredentialsFile())
	require.NoError(t, err)
	rrep, out, err := upOnce(t, n, "redeploy", true)
	require.NoError(t, err, out)
	for _, s := range rrep.Services {
		require.Equal(t, "restarted", s.Action)
	}
	credsAfter, err := os.ReadFile(n.Cfg.CredentialsFile())
	require.NoError(t, err)
	require.Equal(t, credsBefore, credsAfter)

	// status sees both healthy.
	ns := nodeStatus(context.Background(), n)
	require.True(t, ns.Healthy)

	// nuke --hard stops everything and removes data, keeps reports.
	var nout bytes.Buffer
	p := NewProgress(&nout, false)
	nrep := newReport("nuke", n, "local")
	err = finishReport(&nout, n, nrep, p, nuke(n, p, nrep, true))
	require.NoError(t, err, nout.String())
	require.NoDirExists(t, n.Cfg.DataDir)
	require.NoDirExists(t, n.RunDir())
	require.NoFileExists(t, n.Cfg.CredentialsFile())
	require.False(t, nodeStatus(context.Background(), n).Healthy)
	entries, err := filepath.Glob(filepath.Join(n.ReportDir(), "*.json"))
	require.NoError(t, err)
	kinds := map[string]bool{}
	for _, e := range entries {
		r := readReport(t, e)
		kinds[r.Action] = true
		require.True(t, strings.HasPrefix(filepath.Base(e), r.Action+"-"))
	}
	require.Equal(t, map[string]bool{"up": true, "validate": true, "redeploy": true, "nuke": true}, kinds)
}

func TestPreflightRefusesBusyPortAndUnknownProfile(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	// Hold the orchestrator's port with a foreign listener.
	l, err := netListen(n.Cfg.OrchestratorAddr)
	require.NoError(t, err)
	defer l.Close()
	rep, out, err := upOnce(t, n, "up", false)
	require.Error(t, err)
	require.Contains(t, out, "FAILED: preflight port "+n.Cfg.OrchestratorAddr)
	require.Contains(t, out, "next: lsof -i :")
	require.Equal(t, "orchestrator", rep.Failure.Service)
	require.NoFileExists(t, n.PIDFile("model-policy"), "nothing is started when preflight fails")

	var buf bytes.Buffer
	err = preflight(context.Background(), n, NewProgress(&buf, false), upOptions{profile: "gpu-node"}, "")
	require.ErrorContains(t, err, "not supported")
	err = preflight(context.Background(), n, NewProgress(&buf, false), upOptions{profile: "federated"}, "")
	require.ErrorContains(t, err, "federation is not available in this build")
}

func TestWriteEnvFileIfMissing(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	p := filepath.Join(t.TempDir(), ".agentos.env")
	require.NoError(t, writeEnvFileIfMissing(p, n.Cfg))
	vals, err := readEnv(p)
	require.NoError(t, err)
	require.Equal(t, n.Cfg.OrchestratorAddr, vals["AGENTOS_ORCHESTRATOR_ADDR"])
	require.Equal(t, "demo", vals["AGENTOS_MODE"])
	// An existing file is never overwritten.
	require.NoError(t, os.WriteFile(p, []byte("AGENTOS_MODE=dev\n"), 0o644))
	require.NoError(t, writeEnvFileIfMissing(p, n.Cfg))
	b, _ := os.ReadFile(p)
	require.Equal(t, "AGENTOS_MODE=dev\n", string(b))
}
