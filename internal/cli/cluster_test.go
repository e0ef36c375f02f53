package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/gateway"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/supervisor"
)

// testCluster is the cluster profile's node for a config under a temp
// home, with the default ports.
func testCluster(t *testing.T, replicas int, pgURL string) *supervisor.Node {
	t.Helper()
	n, err := supervisor.New(testConfig(t, t.TempDir()), "", availableServices())
	require.NoError(t, err)
	require.NoError(t, applyCluster(n, clusterSpec{replicas: replicas, postgresURL: pgURL}))
	return n
}

func TestApplyClusterProcessList(t *testing.T) {
	t.Parallel()
	n := testCluster(t, 3, "")
	var names, addrs []string
	for _, s := range n.Services {
		names = append(names, s.Name)
		addrs = append(addrs, s.Addr)
	}
	require.Equal(t, []string{"postgres", "nats", "model-policy", "model-policy-2", "model-policy-3",
		"orchestrator", "orchestrator-2", "orchestrator-3", "federation", "gateway"}, names)
	require.Equal(t, []string{"127.0.0.1:50085", "127.0.0.1:50086", "127.0.0.1:50082", "127.0.0.1:50182", "127.0.0.1:50282",
		"127.0.0.1:50081", "127.0.0.1:50181", "127.0.0.1:50281", "127.0.0.1:50083", "127.0.0.1:50080"}, addrs)

	// Every process is on the managed PostgreSQL, whose password is the
	// one kept under secrets/.
	pw, err := supervisor.PostgresPassword(n.Cfg.Home)
	require.NoError(t, err)
	require.Equal(t, "postgres://agentos:"+pw+"@127.0.0.1:50085/agentos?sslmode=disable", n.Cfg.StoreURL)
	pg, _ := n.Service("postgres")
	require.NotContains(t, pg.DisplayURL(), pw)
	require.Equal(t, supervisor.KindPostgres, pg.KindOf())
	require.Empty(t, pg.HealthPath)

	// Replica k has its own address and calls model-policy replica k.
	o3, _ := n.Service("orchestrator-3")
	require.Equal(t, "orchestrator", o3.KindOf())
	require.Equal(t, "http://127.0.0.1:50281", o3.URL)
	require.Equal(t, []string{"AGENTOS_ORCHESTRATOR_ADDR=127.0.0.1:50281", "AGENTOS_MODEL_POLICY_URL=http://127.0.0.1:50282"}, o3.Env)
	mp2, _ := n.Service("model-policy-2")
	require.Equal(t, []string{"AGENTOS_MODEL_POLICY_ADDR=127.0.0.1:50182"}, mp2.Env)
	gw, _ := n.Service("gateway")
	require.Contains(t, gw.Env, "AGENTOS_GATEWAY_UPSTREAMS_FILE="+upstreamsFile(n.Cfg.Home))

	require.Equal(t, []string{"model-policy", "orchestrator", "model-policy-2", "orchestrator-2",
		"model-policy-3", "orchestrator-3", "federation"}, serviceNames(rollingOrder(n)))
}

// TestApplyClusterNATS: one NATS server by default (fsync always, no
// routes), three as a routed cluster with streams of three replicas;
// every replica gets the bus URL through the node's environment.
func TestApplyClusterNATS(t *testing.T) {
	t.Parallel()
	n := testCluster(t, 2, "")
	nats, _ := n.Service("nats")
	require.Equal(t, supervisor.KindNATS, nats.KindOf())
	require.False(t, nats.External)
	require.Equal(t, "127.0.0.1:50087", nats.Monitor)
	control := supervisor.ControlNkeyFile(n.Cfg.Home)
	require.Equal(t, []string{"--name", "nats", "--addr", "127.0.0.1:50086", "--monitor-addr", "127.0.0.1:50087",
		"--control-nkey-file", control}, nats.Args, "authentication on: the control key and registered workers")
	require.FileExists(t, control)
	require.Contains(t, n.ChildEnv(), "AGENTOS_BUS_NKEY_FILE="+control)
	require.Equal(t, "nats://127.0.0.1:50086", n.Cfg.BusURL)
	require.Equal(t, 1, n.Cfg.BusReplicas)
	require.Contains(t, n.ChildEnv(), "AGENTOS_BUS_URL=nats://127.0.0.1:50086")
	require.Contains(t, n.ChildEnv(), "AGENTOS_BUS_REPLICAS=1")

	n3, err := supervisor.New(testConfig(t, t.TempDir()), "", availableServices())
	require.NoError(t, err)
	require.NoError(t, applyCluster(n3, clusterSpec{replicas: 2, natsServers: 3}))
	require.Equal(t, []string{"postgres", "nats", "nats-2", "nats-3", "model-policy", "model-policy-2",
		"orchestrator", "orchestrator-2", "federation", "gateway"}, serviceNames(n3.Services))
	routes := "nats://127.0.0.1:50088,nats://127.0.0.1:50188,nats://127.0.0.1:50288"
	nats2, _ := n3.Service("nats-2")
	require.Equal(t, []string{"--name", "nats-2", "--addr", "127.0.0.1:50186", "--monitor-addr", "127.0.0.1:50187",
		"--control-nkey-file", supervisor.ControlNkeyFile(n3.Cfg.Home), "--cluster-addr", "127.0.0.1:50188", "--routes", routes}, nats2.Args)
	require.Equal(t, "nats://127.0.0.1:50086,nats://127.0.0.1:50186,nats://127.0.0.1:50286", n3.Cfg.BusURL)
	require.Equal(t, 3, n3.Cfg.BusReplicas)
	// Redeploy restarts the replicas only: NATS stays up like PostgreSQL.
	require.NotContains(t, serviceNames(rollingOrder(n3)), "nats")

	err = applyCluster(n3, clusterSpec{replicas: 2, natsServers: 2})
	require.ErrorContains(t, err, "--nats-servers 2: want 1 or 3")
}

// TestApplyClusterExternalNATS: AGENTOS_BUS_URL's NATS is only checked,
// never started or stopped, and the replicas use it as given.
func TestApplyClusterExternalNATS(t *testing.T) {
	t.Parallel()
	c := testConfig(t, t.TempDir())
	c.BusURL, c.BusReplicas = "nats://nats-a.internal:4222,nats://nats-b.internal:4222", 3
	n, err := supervisor.New(c, "", availableServices())
	require.NoError(t, err)
	require.NoError(t, applyCluster(n, clusterSpec{replicas: 2, natsServers: 3, busURL: c.BusURL}))
	ns := servicesOf(n, supervisor.KindNATS)
	require.Len(t, ns, 1)
	require.True(t, ns[0].External)
	require.Equal(t, "nats-a.internal:4222,nats-b.internal:4222", ns[0].Addr)
	require.Equal(t, c.BusURL, n.Cfg.BusURL)
	require.Equal(t, 3, n.Cfg.BusReplicas)
	stopped, err := n.Stop("nats", time.Second)
	require.NoError(t, err)
	require.False(t, stopped)
	_, err = n.Start(ns[0])
	require.ErrorContains(t, err, "external")
}

func serviceNames(ss []supervisor.Service) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

func TestApplyClusterExternalPostgres(t *testing.T) {
	t.Parallel()
	url := "postgres://app:secret@db.internal:5432/agentos"
	n := testCluster(t, 1, url)
	pg, _ := n.Service("postgres")
	require.True(t, pg.External)
	require.Equal(t, url, n.Cfg.StoreURL)
	require.NotContains(t, pg.DisplayURL(), "secret")
	require.False(t, fileExists(supervisor.PostgresPasswordFile(n.Cfg.Home)), "no managed server, no password")
	require.Equal(t, []string{"postgres", "nats", "model-policy", "orchestrator", "federation", "gateway"}, serviceNames(n.Services))
	require.Equal(t, "db.internal:5432", pg.Addr)

	for _, bad := range []string{"mysql://u:secret@h:1/db", "postgres:///db", "::"} {
		n, err := supervisor.New(testConfig(t, t.TempDir()), "", availableServices())
		require.NoError(t, err)
		err = applyCluster(n, clusterSpec{replicas: 1, postgresURL: bad})
		require.ErrorContains(t, err, "AGENTOS_POSTGRES_URL", bad)
		require.NotContains(t, err.Error(), "secret")
	}
}

func TestApplyClusterRejectsBadReplicas(t *testing.T) {
	t.Parallel()
	for _, r := range []int{0, -1, maxReplicas + 1} {
		n, err := supervisor.New(testConfig(t, t.TempDir()), "", availableServices())
		require.NoError(t, err)
		require.ErrorContains(t, applyCluster(n, clusterSpec{replicas: r}), "--replicas")
	}
	// Replica ports past 65535 are refused, naming the replica.
	c := testConfig(t, t.TempDir())
	c.OrchestratorAddr = "127.0.0.1:65400"
	n, err := supervisor.New(c, "", availableServices())
	require.NoError(t, err)
	require.ErrorContains(t, applyCluster(n, clusterSpec{replicas: 3}), "orchestrator replica 3")
}

func TestClusterUpstreamsFile(t *testing.T) {
	t.Parallel()
	n := testCluster(t, 2, "")
	changed, err := writeUpstreams(n)
	require.NoError(t, err)
	require.True(t, changed)
	u, err := gateway.LoadUpstreams(upstreamsFile(n.Cfg.Home))
	require.NoError(t, err)
	require.Equal(t, []string{"http://127.0.0.1:50081", "http://127.0.0.1:50181"}, u.Orchestrator)
	require.Equal(t, []string{"http://127.0.0.1:50082", "http://127.0.0.1:50182"}, u.ModelPolicy)
	require.Equal(t, []string{"http://127.0.0.1:50083"}, u.Federation)
	changed, err = writeUpstreams(n)
	require.NoError(t, err)
	require.False(t, changed, "the same replicas: the running gateway is kept")
}

func TestClusterStateAndProfile(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	_, ok, err := readClusterState(home)
	require.NoError(t, err)
	require.False(t, ok)
	p, err := resolveProfile("", home)
	require.NoError(t, err)
	require.Equal(t, profileLocal, p)

	require.NoError(t, writeClusterState(filepath.Join(home, "new"), clusterState{Replicas: 1}), "a home not made yet (external PostgreSQL: nothing else made it)")
	require.NoError(t, writeClusterState(home, clusterState{Replicas: 3}))
	st, ok, err := readClusterState(home)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 3, st.Replicas)
	p, err = resolveProfile("auto", home)
	require.NoError(t, err)
	require.Equal(t, profileCluster, p, "cluster.json makes cluster the default")

	require.NoError(t, os.WriteFile(clusterStateFile(home), []byte(`{"replicas":0}`), 0o644))
	_, _, err = readClusterState(home)
	require.ErrorContains(t, err, "--replicas 0")

	// An external store recorded but no URL given: refused, naming it.
	require.NoError(t, writeClusterState(home, clusterState{Replicas: 2, ExternalPostgres: true}))
	n, err := supervisor.New(testConfig(t, home), "", availableServices())
	require.NoError(t, err)
	_, err = loadCluster(n)
	require.ErrorContains(t, err, "AGENTOS_POSTGRES_URL")
}

func TestPoolsComplete(t *testing.T) {
	t.Parallel()
	var b gatewayPools
	require.NoError(t, jsonUnmarshal(`{"status":"ready","pools":{"orchestrator":{"healthy":2,"total":2},"model-policy":{"healthy":1,"total":2}}}`, &b))
	require.ErrorContains(t, poolsComplete(b), "pool model-policy: 1 of 2")
	var all gatewayPools
	require.NoError(t, jsonUnmarshal(`{"pools":{"orchestrator":{"healthy":2,"total":2}}}`, &all))
	require.NoError(t, poolsComplete(all))
}

func TestGapless(t *testing.T) {
	t.Parallel()
	evs := func(types ...string) []store.Event {
		var out []store.Event
		for i, ty := range types {
			out = append(out, store.Event{Sequence: int64(i + 1), Type: ty})
		}
		return out
	}
	require.NoError(t, gapless(evs(store.EventRunCreated, store.EventRunCompleted), store.EventRunCompleted))
	require.ErrorContains(t, gapless(nil, store.EventRunCompleted), "no events")
	require.ErrorContains(t, gapless(evs(store.EventRunCreated, store.EventRunCanceled), store.EventRunCompleted), "want agentos.run.completed")
	require.ErrorContains(t, gapless(evs(store.EventRunCreated, store.EventRunCompleted, store.EventRunCreated), store.EventRunCreated), "not the last")
	gap := evs(store.EventRunCreated, store.EventRunCompleted)
	gap[1].Sequence = 3
	require.ErrorContains(t, gapless(gap, store.EventRunCompleted), "sequence 3, want 2")
}

func TestPortFlag(t *testing.T) {
	t.Parallel()
	n := testCluster(t, 2, "")
	for name, want := range map[string]string{
		"orchestrator":   "--orchestrator-addr",
		"model-policy-2": "(k-1)*100",
		"postgres":       "AGENTOS_POSTGRES_URL",
		"gateway":        "AGENTOS_GATEWAY_ADDR",
	} {
		s, ok := n.Service(name)
		require.True(t, ok, name)
		require.True(t, strings.Contains(portFlag(s), want), "%s: %s", name, portFlag(s))
	}
	require.Equal(t, filepath.Join(n.Cfg.Home, "gateway-upstreams.yaml"), upstreamsFile(n.Cfg.Home))
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func TestDefaultProfile(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	require.Equal(t, profileLocal, defaultProfile("", home))
	require.Equal(t, profileFederated, defaultProfile(profileFederated, home))
	require.NoError(t, writeClusterState(home, clusterState{Replicas: 2}))
	require.Equal(t, profileCluster, defaultProfile("", home), "after up --profile cluster, plain up and validate mean it")
	require.Equal(t, profileLocal, defaultProfile(profileLocal, home))
}

// TestClusterStateNATSServers: a cluster.json from before NATS means one
// server; a count other than 1 or 3 is refused with the flag named.
func TestClusterStateNATSServers(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	require.NoError(t, os.WriteFile(clusterStateFile(home), []byte(`{"replicas":2,"external_postgres":false}`), 0o644))
	st, ok, err := readClusterState(home)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 1, st.NATSServers)
	require.NoError(t, writeClusterState(home, clusterState{Replicas: 2, NATSServers: 3}))
	st, _, err = readClusterState(home)
	require.NoError(t, err)
	require.Equal(t, 3, st.NATSServers)
	require.NoError(t, os.WriteFile(clusterStateFile(home), []byte(`{"replicas":2,"nats_servers":2}`), 0o644))
	_, _, err = readClusterState(home)
	require.ErrorContains(t, err, "--nats-servers 2: want 1 or 3")
}
