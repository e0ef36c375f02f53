package e2e

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/federation/peers"
)

// TestOperatorFederatedProfile is the federation issue's two-node recipe as
// an operator runs it: up --profile federated (node A on free ports, node B
// on the same ports plus an offset), again (idempotent), validate --profile
// federated (forward A->B, stream back), status listing both nodes, logs
// --node b, a node B service killed (validate names node b, up restores
// it), and nuke --hard stopping both; every report exists and parses.
func TestOperatorFederatedProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two nodes of real processes; skipped with -short")
	}
	t.Parallel()
	n := opNewNode(t)
	if out, _ := n.run("serve", "--help"); !strings.Contains(out, "  federation ") {
		t.Fatalf("this build has no `agentos serve federation`:\n%s", out)
	}
	offset := opfedPortOffset(t, n)
	n.env = append(n.env, "AGENTOS_NODE_B_PORT_OFFSET="+strconv.Itoa(offset))
	homeB := filepath.Join(n.home(), "node-b")

	out, code := n.run("up", "--profile", "federated")
	require.Equal(t, 0, code, out)
	for _, want := range []string{"==> certs", "services healthy 6/6", "federation checks passed 6/6", "Node B:", "stk_local_node_b"} {
		require.Contains(t, out, want)
	}
	up := opfedLatestReport(t, n, "up")
	require.True(t, up.OK)
	require.Equal(t, "federated", up.Profile)
	require.Len(t, up.Services, 6)
	require.NotNil(t, up.Federation)
	require.Len(t, up.Federation.Nodes, 2)
	require.Equal(t, "stk_local_node_b", up.Federation.Nodes[1].StackID)
	require.Equal(t, "https://"+opfedShift(t, opfedPeerAddr(n), offset), up.Federation.Nodes[1].PeerURL)

	// One CA, a certificate per node, each the other's peer.
	for _, home := range []string{n.home(), homeB} {
		for _, f := range []string{"ca.pem", "node.pem", "node-key.pem", "signing.key", "peers.yaml"} {
			require.FileExists(t, filepath.Join(home, "federation", f))
		}
	}
	caA, err := os.ReadFile(filepath.Join(n.home(), "federation", "ca.pem"))
	require.NoError(t, err)
	caB, err := os.ReadFile(filepath.Join(homeB, "federation", "ca.pem"))
	require.NoError(t, err)
	require.Equal(t, caA, caB, "both nodes trust the same CA")
	require.Equal(t, []string{"stk_local_node_b"}, opfedPeers(t, n.home()))
	require.Equal(t, []string{"stk_local_node_a"}, opfedPeers(t, homeB))

	// Idempotent: both nodes left running.
	pidB := opfedPID(t, homeB, "orchestrator")
	out, code = n.run("up", "--profile", "federated", "--skip-validate")
	require.Equal(t, 0, code, out)
	require.Equal(t, 6, strings.Count(out, "left running"), out)
	require.Equal(t, pidB, opfedPID(t, homeB, "orchestrator"))

	out, code = n.run("validate", "--profile", "federated")
	require.Equal(t, 0, code, out)
	val := opfedLatestReport(t, n, "validate")
	require.True(t, val.OK)
	require.Len(t, val.Health, 12)
	require.NotNil(t, val.Federation)
	var names []string
	for _, c := range val.Federation.Checks {
		require.True(t, c.OK, "%s: %s", c.Name, c.Error)
		names = append(names, c.Name)
	}
	require.Contains(t, names, "forward a→b")
	require.Contains(t, names, "stream back through a")
	require.Contains(t, opfedMarkdown(t, val), "## Federation")

	out, code = n.run("status", "--json")
	require.Equal(t, 0, code, out)
	var st struct {
		StackID  string `json:"stack_id"`
		Healthy  bool   `json:"healthy"`
		Services []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"services"`
		Peers []string `json:"peers"`
		NodeB *struct {
			StackID  string `json:"stack_id"`
			Healthy  bool   `json:"healthy"`
			Services []struct {
				Name    string `json:"name"`
				State   string `json:"state"`
				Address string `json:"address"`
			} `json:"services"`
			Peers []string `json:"peers"`
		} `json:"node_b"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	require.True(t, st.Healthy)
	require.Equal(t, "stk_local_node_a", st.StackID)
	require.NotNil(t, st.NodeB)
	require.Equal(t, "stk_local_node_b", st.NodeB.StackID)
	require.Len(t, st.NodeB.Services, 3)
	for _, s := range st.NodeB.Services {
		require.Equal(t, "healthy", s.State, s.Name)
	}
	require.Equal(t, []string{"stk_local_node_b"}, st.Peers)
	require.Equal(t, []string{"stk_local_node_a"}, st.NodeB.Peers)
	out, code = n.run("status")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "node b: stk_local_node_b")

	out, code = n.run("logs", "federation", "--node", "b", "--tail", "50")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "stk_local_node_b")

	// Node B's federation dies: validate names it, up restores it.
	fedB := opfedPID(t, homeB, "federation")
	require.NoError(t, syscall.Kill(fedB, syscall.SIGKILL))
	out, code = n.run("validate", "--profile", "federated")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "node b (stk_local_node_b)")
	failed := opfedLatestReport(t, n, "validate")
	require.False(t, failed.OK)
	require.NotNil(t, failed.Failure)
	require.Equal(t, "b", failed.Failure.Node)
	require.Equal(t, "federation", failed.Failure.Service)
	out, code = n.run("up", "--profile", "federated")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "b/federation")

	// nuke stops both nodes; --hard removes node B's home.
	pids := []int{opfedPID(t, n.home(), "orchestrator"), opfedPID(t, homeB, "orchestrator"), opfedPID(t, homeB, "federation")}
	out, code = n.run("nuke", "--hard", "--yes-really")
	require.Equal(t, 0, code, out)
	for _, pid := range pids {
		require.False(t, opfedAlive(pid), "pid %d still running after nuke", pid)
	}
	require.NoDirExists(t, homeB)
	require.Empty(t, opfedPeers(t, n.home()), "node A forgets node B")
	nuke := opfedLatestReport(t, n, "nuke")
	require.True(t, nuke.OK)
	require.Len(t, nuke.Services, 6)
	out, code = n.run("status")
	require.Equal(t, 1, code, out)
	require.NotContains(t, out, "stk_local_node_b")
}

// opfedReport is the part of a report this test reads.
type opfedReport struct {
	Action   string `json:"action"`
	OK       bool   `json:"ok"`
	Profile  string `json:"profile"`
	Services []struct {
		Name string `json:"name"`
		Node string `json:"node"`
	} `json:"services"`
	Health     []json.RawMessage `json:"health"`
	Federation *struct {
		Nodes []struct {
			StackID string `json:"stack_id"`
			PeerURL string `json:"peer_url"`
		} `json:"nodes"`
		Checks []struct {
			Name  string `json:"name"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"checks"`
	} `json:"federation"`
	Failure *struct {
		Node    string `json:"node"`
		Service string `json:"service"`
	} `json:"failure"`
	Reports struct {
		Markdown string `json:"markdown"`
	} `json:"reports"`
}

// opfedLatestReport parses the newest report of action.
func opfedLatestReport(t *testing.T, n *opNode, action string) opfedReport {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(n.home(), "reports", action+"-*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, paths, "no %s report", action)
	sort.Slice(paths, func(i, j int) bool {
		a, _ := os.Stat(paths[i])
		b, _ := os.Stat(paths[j])
		return a.ModTime().Before(b.ModTime()) || (a.ModTime().Equal(b.ModTime()) && paths[i] < paths[j])
	})
	b, err := os.ReadFile(paths[len(paths)-1])
	require.NoError(t, err)
	var r opfedReport
	require.NoError(t, json.Unmarshal(b, &r), string(b))
	require.Equal(t, action, r.Action)
	require.FileExists(t, r.Reports.Markdown)
	return r
}

func opfedMarkdown(t *testing.T, r opfedReport) string {
	t.Helper()
	b, err := os.ReadFile(r.Reports.Markdown)
	require.NoError(t, err)
	return string(b)
}

// opfedPID reads a service's pid file under home.
func opfedPID(t *testing.T, home, service string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, "run", service+".pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return pid
}

// opfedAlive reports whether pid is a running process (a zombie, exited
// but not yet reaped by its new parent, is not).
func opfedAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// opfedPeers lists the stack_ids in a node's peers file.
func opfedPeers(t *testing.T, home string) []string {
	t.Helper()
	ps, err := peers.Load(filepath.Join(home, "federation", "peers.yaml"))
	require.NoError(t, err)
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.StackID)
	}
	return ids
}

// opfedPeerAddr is node A's federation peer address from the node's env.
func opfedPeerAddr(n *opNode) string {
	for _, kv := range n.env {
		if v, ok := strings.CutPrefix(kv, "AGENTOS_FEDERATION_PEER_ADDR="); ok {
			return v
		}
	}
	return ""
}

func opfedShift(t *testing.T, addr string, offset int) string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return net.JoinHostPort(host, strconv.Itoa(p+offset))
}

// opfedPortOffset finds an offset at which all four of node A's ports,
// shifted, are free now, so that node B can use them.
func opfedPortOffset(t *testing.T, n *opNode) int {
	t.Helper()
	addrs := []string{n.orchestrator, n.modelPolicy, n.federation, opfedPeerAddr(n)}
	// Node A's own ports are free now (it is not started yet), so an offset
	// that lands node B on one of them would pass the listen check below
	// and fail at boot: seen once, B's peer port on A's orchestrator port.
	portsA := map[int]bool{}
	for _, a := range addrs {
		_, port, err := net.SplitHostPort(a)
		require.NoError(t, err)
		p, _ := strconv.Atoi(port)
		portsA[p] = true
	}
	for _, off := range []int{10, 20, 30, 40, 50, 100, 200, 300, 500, 700, 1000, 1500, 2000, -10, -100, -1000} {
		ok := true
		for _, a := range addrs {
			host, port, err := net.SplitHostPort(a)
			require.NoError(t, err)
			p, _ := strconv.Atoi(port)
			if p+off < 1024 || p+off > 65535 || portsA[p+off] {
				ok = false
				break
			}
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p+off)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return off
		}
	}
	t.Fatal("no port offset with four free ports for node B")
	return 0
}
