package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/supervisor"
)

func testConfig(t *testing.T, home string) config.Config {
	t.Helper()
	c, err := config.Load(func(string) (string, bool) { return "", false }, filepath.Join(home, "none.env"))
	require.NoError(t, err)
	c.Home = home
	require.NoError(t, c.Finish())
	return c
}

func TestShiftPort(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		off  int
		want string
		err  string
	}{
		{"127.0.0.1:50081", 10, "127.0.0.1:50091", ""},
		{"[::1]:8080", -80, "[::1]:8000", ""},
		{":50084", 10, ":50094", ""},
		{"127.0.0.1:65530", 10, "", "out of range"},
		{"127.0.0.1:5", -5, "", "out of range"},
		{"127.0.0.1", 10, "", "missing port"},
		{"127.0.0.1:http", 10, "", "not a number"},
	} {
		got, err := shiftPort(tc.in, tc.off)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got)
	}
}

func FuzzShiftPort(f *testing.F) {
	f.Add("127.0.0.1:50081", 10)
	f.Add("[::1]:1", -1)
	f.Add("host:65535", 1)
	f.Add(":x", 3)
	f.Fuzz(func(t *testing.T, addr string, off int) {
		got, err := shiftPort(addr, off)
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(got)
		require.NoError(t, err)
		p, err := strconv.Atoi(port)
		require.NoError(t, err)
		require.True(t, p >= 1 && p <= 65535)
		h0, p0, _ := net.SplitHostPort(addr)
		n0, _ := strconv.Atoi(p0)
		require.Equal(t, h0, host)
		require.Equal(t, n0+off, p)
	})
}

func TestNodeBConfigDerivesHomePortsAndStack(t *testing.T) {
	t.Parallel()
	a := testConfig(t, t.TempDir())
	a.ModelPolicyConfig = "/etc/models.yaml"
	b, err := nodeBConfig(a, 10)
	require.NoError(t, err)
	require.Equal(t, NodeBStackID, b.StackID)
	require.Equal(t, filepath.Join(a.Home, "node-b"), b.Home)
	require.Equal(t, filepath.Join(a.Home, "node-b", "data"), b.DataDir)
	require.Equal(t, "127.0.0.1:50091", b.OrchestratorAddr)
	require.Equal(t, "127.0.0.1:50092", b.ModelPolicyAddr)
	require.Equal(t, "127.0.0.1:50093", b.FederationAddr)
	require.Equal(t, "127.0.0.1:50094", b.FederationPeerAddr)
	require.Equal(t, "http://127.0.0.1:50091", b.OrchestratorURL)
	require.Equal(t, "http://127.0.0.1:50092", b.ModelPolicyURL)
	require.Equal(t, "http://127.0.0.1:50093", b.FederationURL)
	require.Equal(t, "sqlite://"+filepath.Join(b.DataDir, "agentos.db"), b.StoreURL)
	require.Equal(t, "file:"+filepath.Join(b.DataDir, "audit", "audit.jsonl"), b.AuditSink)
	require.Equal(t, filepath.Join(b.DataDir, "audit-checkpoints.jsonl"), b.AuditCheckpointFile, "node B's own checkpoints")
	require.Equal(t, a.Mode, b.Mode)
	require.Equal(t, "/etc/models.yaml", b.ModelPolicyConfig)
	require.Equal(t, "https://127.0.0.1:50094", peerURL(b))

	a.StackID = NodeBStackID
	_, err = nodeBConfig(a, 10)
	require.ErrorContains(t, err, "stk_local_node_b")
	a.StackID = "stk_local_node_a"
	a.OrchestratorAddr = "127.0.0.1:65530"
	_, err = nodeBConfig(a, 10)
	require.ErrorContains(t, err, "out of range")
}

func TestNodeEnvRoundTripAndOffset(t *testing.T) {
	home := t.TempDir()
	a := testConfig(t, home)
	a.Executors = 3
	a.QuotaRunCreateQPS = 2.5
	b, err := nodeBConfig(a, 20)
	require.NoError(t, err)
	require.NoError(t, writeNodeEnv(nodeBEnvFile(home), b, 20))
	got, err := readNodeEnv(nodeBEnvFile(home))
	require.NoError(t, err)
	require.Equal(t, b, got)

	off, err := portOffset(0, a)
	require.NoError(t, err)
	require.Equal(t, 20, off, "the last up's offset")
	off, err = portOffset(7, a)
	require.NoError(t, err)
	require.Equal(t, 7, off, "the flag wins")
	withOffset := a
	withOffset.NodeBPortOffset = 30
	off, err = portOffset(0, withOffset)
	require.NoError(t, err)
	require.Equal(t, 30, off, "the setting beats the recorded offset")
	require.NoError(t, os.WriteFile(nodeBEnvFile(home), []byte(nodeBOffsetEnv+"=zero\n"), 0o600))
	_, err = portOffset(0, a)
	require.ErrorContains(t, err, nodeBOffsetEnv)
	other := a
	other.Home = t.TempDir()
	off, err = portOffset(0, other)
	require.NoError(t, err)
	require.Equal(t, DefaultNodeBPortOffset, off)

	p, err := resolveProfile("", home)
	require.NoError(t, err)
	require.Equal(t, profileFederated, p, "node B exists")
	p, err = resolveProfile("", t.TempDir())
	require.NoError(t, err)
	require.Equal(t, profileLocal, p)
	p, err = resolveProfile(profileLocal, home)
	require.NoError(t, err)
	require.Equal(t, profileLocal, p)
	_, err = resolveProfile("gpu-node", home)
	require.ErrorContains(t, err, "gpu-node")
}

func TestDialHostAndCertHosts(t *testing.T) {
	t.Parallel()
	require.Equal(t, "127.0.0.1:50084", supervisor.DialHost("0.0.0.0:50084"))
	require.Equal(t, "127.0.0.1:50084", supervisor.DialHost(":50084"))
	require.Equal(t, "127.0.0.1:50084", supervisor.DialHost("[::]:50084"))
	require.Equal(t, "10.0.0.5:50084", supervisor.DialHost("10.0.0.5:50084"))
	require.Nil(t, certHosts("127.0.0.1:50084"))
	require.Nil(t, certHosts("0.0.0.0:50084"))
	require.Nil(t, certHosts("localhost:50084"))
	require.Equal(t, append(append([]string{}, pki.DefaultHosts...), "10.0.0.5"), certHosts("10.0.0.5:50084"))
}

// twoNodes builds node A in a temp home with node B attached (no processes).
func twoNodes(t *testing.T) *supervisor.Node {
	t.Helper()
	a, err := supervisor.New(testConfig(t, t.TempDir()), "", map[string]bool{"orchestrator": true, "model-policy": true, "federation": true})
	require.NoError(t, err)
	cb, err := nodeBConfig(a.Cfg, 10)
	require.NoError(t, err)
	require.NoError(t, attachNodeB(a, cb))
	return a
}

func TestSetupFederationIsIdempotentAndSharesOneCA(t *testing.T) {
	t.Parallel()
	a := twoNodes(t)
	fa, fb := federation.FilesIn(a.Cfg.Home), federation.FilesIn(a.B.Cfg.Home)

	fs, err := setupFederation(a)
	require.NoError(t, err)
	require.Equal(t, fa.CADir, fs.CADir)
	require.Equal(t, "https://127.0.0.1:50084", fs.Peers["stk_local_node_a"])
	require.Equal(t, "https://127.0.0.1:50094", fs.Peers["stk_local_node_b"])
	for _, f := range []federation.Files{fa, fb} {
		nt, err := pki.LoadNodeTLS(f.CA, f.Cert, f.Key)
		require.NoError(t, err)
		require.Contains(t, []string{"stk_local_node_a", "stk_local_node_b"}, nt.StackID)
	}
	nb, err := pki.LoadNodeTLS(fa.CA, fb.Cert, fb.Key)
	require.NoError(t, err, "node A's CA verifies node B's certificate")
	require.Equal(t, NodeBStackID, nb.StackID)
	pa, err := peers.Load(fa.Peers)
	require.NoError(t, err)
	require.Len(t, pa, 1)
	require.Equal(t, NodeBStackID, pa[0].StackID)
	require.Equal(t, fs.Keys[NodeBStackID], pa[0].PublicKey)
	pb, err := peers.Load(fb.Peers)
	require.NoError(t, err)
	require.Len(t, pb, 1)
	require.Equal(t, "stk_local_node_a", pb[0].StackID)
	require.Equal(t, "https://127.0.0.1:50084", pb[0].FederationURL)
	certB, _ := os.ReadFile(fb.Cert)
	keyB, _ := os.ReadFile(fb.SigningKey)

	// Again: nothing reissued, peers not duplicated.
	_, err = setupFederation(a)
	require.NoError(t, err)
	again, _ := os.ReadFile(fb.Cert)
	require.Equal(t, certB, again)
	againKey, _ := os.ReadFile(fb.SigningKey)
	require.Equal(t, keyB, againKey)
	pa, err = peers.Load(fa.Peers)
	require.NoError(t, err)
	require.Len(t, pa, 1)

	// Node B's certificate from another CA is reissued from node A's.
	other := t.TempDir()
	_, _, err = pki.InitCA(other)
	require.NoError(t, err)
	_, err = pki.IssueNodeCert(other, NodeBStackID, nil, fb.Dir)
	require.NoError(t, err)
	_, err = setupFederation(a)
	require.NoError(t, err)
	_, err = pki.LoadNodeTLS(fa.CA, fb.Cert, fb.Key)
	require.NoError(t, err)
	caA, _ := os.ReadFile(fa.CA)
	caB, _ := os.ReadFile(fb.CA)
	require.True(t, bytes.Equal(caA, caB))
}

func TestCheckEventSequence(t *testing.T) {
	t.Parallel()
	f := federation.Forwarded{TenantID: "tnt_demo", RemoteRunID: "run_1"}
	ev := func(seq int64, typ string) store.Event {
		return store.Event{Sequence: seq, Type: typ, RunID: "run_1", TenantID: "tnt_demo"}
	}
	ok := []store.Event{ev(1, "agentos.run.created"), ev(2, "agentos.run.step.started"), ev(3, store.EventRunCompleted)}
	require.NoError(t, checkEventSequence(ok, f))
	require.ErrorContains(t, checkEventSequence(nil, f), "without events")
	require.ErrorContains(t, checkEventSequence([]store.Event{ev(1, "a"), ev(3, store.EventRunCompleted)}, f), "gapless")
	require.ErrorContains(t, checkEventSequence([]store.Event{ev(1, "a"), ev(2, "b")}, f), "without a terminal event")
	require.ErrorContains(t, checkEventSequence([]store.Event{ev(1, store.EventRunCompleted), ev(2, "b")}, f), "not the last")
	require.ErrorContains(t, checkEventSequence([]store.Event{ev(1, "a"), ev(2, "agentos.run.failed")}, f), "want agentos.run.completed")
	other := ev(2, store.EventRunCompleted)
	other.TenantID = "tnt_other"
	require.ErrorContains(t, checkEventSequence([]store.Event{ev(1, "a"), other}, f), "tnt_other")
	wrongRun := ev(1, store.EventRunCompleted)
	wrongRun.RunID = "run_2"
	require.ErrorContains(t, checkEventSequence([]store.Event{wrongRun}, f), "run_2")
}

// TestFederatedNodesStatusLogsNuke runs node A and node B as fake services:
// status lists both, logs --node b reads node B's log, nuke --hard stops
// both and removes node B's home, and a build without federation refuses
// the federated profile naming the reason.
func TestFederatedNodesStatusLogsNuke(t *testing.T) {
	t.Parallel()
	a := newFakeNode(t)
	cb, err := nodeBConfig(a.Cfg, 0)
	require.NoError(t, err)
	cb.OrchestratorAddr, cb.ModelPolicyAddr = freeAddr(t), freeAddr(t)
	cb.OrchestratorURL, cb.ModelPolicyURL = "", ""
	require.NoError(t, cb.Finish())
	require.NoError(t, attachNodeB(a, cb))
	require.NoError(t, writeNodeEnv(nodeBEnvFile(a.Cfg.Home), cb, 0))
	t.Cleanup(func() {
		for _, s := range a.B.Services {
			_, _ = a.B.Stop(s.Name, 5*time.Second)
		}
	})
	ctx := context.Background()

	// Without a federation service the profile is refused before anything starts.
	var out bytes.Buffer
	p := NewProgress(&out, false)
	rep := newReport("up", a, profileFederated)
	err = up(ctx, a, p, rep, upOptions{profile: profileFederated, bootTimeout: 30 * time.Second}, false, "")
	require.ErrorContains(t, err, "federation is not available")
	require.NoFileExists(t, a.PIDFile("orchestrator"))

	// Boot both nodes (as up does after certs).
	p = NewProgress(&out, false)
	p.Phase("boot")
	require.NoError(t, boot(ctx, a, p, rep, upOptions{bootTimeout: 30 * time.Second}, false), out.String())
	p.End(nil, "")
	require.Len(t, rep.Services, 4)
	require.Equal(t, "b", rep.Services[3].Node)
	require.Contains(t, out.String(), "services healthy 4/4")
	require.Contains(t, out.String(), "b/orchestrator")

	// Status: both nodes healthy; node B reloaded from node.env.
	fresh, err := supervisor.New(a.Cfg, "", map[string]bool{"orchestrator": true, "model-policy": true})
	require.NoError(t, err)
	ok, err := loadNodeB(fresh)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, a.B.Cfg.OrchestratorAddr, fresh.B.Cfg.OrchestratorAddr)
	stB := nodeStatus(ctx, fresh.B)
	require.True(t, stB.Healthy)
	require.Equal(t, NodeBStackID, stB.StackID)
	require.Equal(t, "b", stB.Node)

	// logs --node b through the command.
	root := NewRootCmd()
	var logs bytes.Buffer
	root.SetOut(&logs)
	root.SetErr(&logs)
	root.SetArgs([]string{"logs", "orchestrator", "--node", "b", "--tail", "5",
		"--home", a.Cfg.Home, "--env-file", filepath.Join(a.Cfg.Home, "none.env")})
	require.NoError(t, root.Execute())
	require.Contains(t, logs.String(), "fake orchestrator listening on "+a.B.Cfg.OrchestratorAddr)
	root = NewRootCmd()
	root.SetOut(&logs)
	root.SetErr(&logs)
	root.SetArgs([]string{"logs", "orchestrator", "--node", "c", "--home", a.Cfg.Home, "--env-file", filepath.Join(a.Cfg.Home, "none.env")})
	require.ErrorContains(t, root.Execute(), "want a or b")

	// nuke --hard stops both and removes node B's home.
	pidB, _ := a.B.ReadPID("orchestrator")
	pidA, _ := a.ReadPID("orchestrator")
	out.Reset()
	rep = newReport("nuke", a, profileFederated)
	require.NoError(t, nuke(a, NewProgress(&out, false), rep, true))
	require.False(t, supervisor.ProcessAlive(pidA))
	require.False(t, supervisor.ProcessAlive(pidB))
	require.NoDirExists(t, a.B.Cfg.Home)
	require.Len(t, rep.Services, 4)
	require.Contains(t, out.String(), "services stopped 4/4")
	require.NotContains(t, out.String(), "FAIL")
	again, err := supervisor.New(a.Cfg, "", map[string]bool{"orchestrator": true, "model-policy": true})
	require.NoError(t, err)
	ok, err = loadNodeB(again)
	require.NoError(t, err)
	require.False(t, ok, "node B is gone")
}
