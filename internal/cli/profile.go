package cli

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/node"
	"github.com/nexixai/agentos/internal/supervisor"
)

// Profiles of up, redeploy and validate.
const (
	profileLocal     = "local"
	profileFederated = "federated"
)

// The federated profile's second node on the same machine.
const (
	// NodeBStackID is node B's stack_id.
	NodeBStackID = "stk_local_node_b"
	// DefaultNodeBPortOffset is added to each of node A's ports to get
	// node B's (50081 -> 50091, ...).
	DefaultNodeBPortOffset = 10
	nodeBDirName           = "node-b"
	nodeBEnvName           = "node.env"
	nodeBOffsetEnv         = "AGENTOS_NODE_B_PORT_OFFSET"
)

// federationFileEnv are the per-file overrides of the federation identity
// (node.FederationFiles). The federated profile uses the default layout on
// both nodes, so node B's children get them cleared.
var federationFileEnv = []string{
	"AGENTOS_FEDERATION_CA_FILE", "AGENTOS_FEDERATION_CERT_FILE", "AGENTOS_FEDERATION_KEY_FILE",
	"AGENTOS_FEDERATION_SIGNING_KEY_FILE", "AGENTOS_FEDERATION_PEERS_FILE",
}

// nodeBHome is node B's AGENTOS_HOME inside node A's.
func nodeBHome(aHome string) string { return filepath.Join(aHome, nodeBDirName) }

// nodeBEnvFile records node B's effective settings; its presence means
// node B exists.
func nodeBEnvFile(aHome string) string { return filepath.Join(nodeBHome(aHome), nodeBEnvName) }

// resolveProfile turns the --profile flag into local, federated or
// cluster: "" (or "auto") picks cluster when cluster.json exists under
// home, federated when node B does.
func resolveProfile(flag, home string) (string, error) {
	switch flag {
	case profileLocal, profileFederated, profileCluster:
		return flag, nil
	case "", "auto":
		if fileExists(clusterStateFile(home)) {
			return profileCluster, nil
		}
		if fileExists(nodeBEnvFile(home)) {
			return profileFederated, nil
		}
		return profileLocal, nil
	}
	return "", fmt.Errorf("profile %q is not supported by this build (want local, federated or cluster)", flag)
}

// defaultProfile is up's and validate's --profile: as given, else cluster
// when the last up made one under home, else local (federated is asked
// for by name).
func defaultProfile(flag, home string) string {
	switch {
	case flag != "":
		return flag
	case fileExists(clusterStateFile(home)):
		return profileCluster
	}
	return profileLocal
}

// portOffset returns --node-b-port-offset, else node A's
// AGENTOS_NODE_B_PORT_OFFSET (a.NodeBPortOffset), else the offset recorded
// in node B's node.env by the last up, else DefaultNodeBPortOffset.
func portOffset(flag int, a config.Config) (int, error) {
	if flag != 0 {
		return flag, nil
	}
	if a.NodeBPortOffset != 0 {
		return a.NodeBPortOffset, nil
	}
	parse := func(src, v string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n == 0 {
			return 0, fmt.Errorf("%s %s=%q: want a non-zero integer", src, nodeBOffsetEnv, v)
		}
		return n, nil
	}
	if vals, err := config.ReadEnvFile(nodeBEnvFile(a.Home)); err == nil && vals[nodeBOffsetEnv] != "" {
		return parse(nodeBEnvFile(a.Home), vals[nodeBOffsetEnv])
	}
	return DefaultNodeBPortOffset, nil
}

// shiftPort adds offset to the port of a host:port address.
func shiftPort(addr string, offset int) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("address %q: port is not a number", addr)
	}
	if p+offset < 1 || p+offset > 65535 {
		return "", fmt.Errorf("address %q: port %d + offset %d is out of range", addr, p, offset)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+offset)), nil
}

// nodeBConfig derives node B's configuration from node A's: home
// $AGENTOS_HOME/node-b (own data, store and audit log), stack_id
// stk_local_node_b and every port plus offset. URLs are derived from the
// shifted addresses.
func nodeBConfig(a config.Config, offset int) (config.Config, error) {
	if a.StackID == NodeBStackID {
		return config.Config{}, fmt.Errorf("node A's stack_id is %s, the id the federated profile gives node B; use another AGENTOS_STACK_ID", NodeBStackID)
	}
	b := a
	b.Home = nodeBHome(a.Home)
	b.DataDir = filepath.Join(b.Home, "data")
	b.StackID = NodeBStackID
	b.OrchestratorURL, b.ModelPolicyURL, b.FederationURL = "", "", ""
	b.StoreURL = ""
	if strings.HasPrefix(a.AuditSink, "file:") {
		b.AuditSink = ""
	}
	// Node B has its own chain and key: its checkpoints go under its own
	// data dir, never into node A's file.
	b.AuditCheckpointFile = ""
	// Its artifacts, too, go under its own data dir.
	b.ArtifactDir = ""
	// Node B's keys and certificates are its own, in the default layout
	// under its home (its children get node A's overrides cleared too).
	b.NodeKeyFile = ""
	b.FederationCAFile, b.FederationCertFile, b.FederationKeyFile = "", "", ""
	b.FederationSigningKeyFile, b.FederationPeersFile = "", ""
	// The offset it was derived with, which its node.env records.
	b.NodeBPortOffset = offset
	for _, f := range []*string{&b.OrchestratorAddr, &b.ModelPolicyAddr, &b.FederationAddr, &b.FederationPeerAddr} {
		s, err := shiftPort(*f, offset)
		if err != nil {
			return config.Config{}, err
		}
		*f = s
	}
	return b, b.Finish()
}

// writeNodeEnv writes the settings of c (and the port offset it was
// derived with) to path as KEY=VALUE lines.
func writeNodeEnv(path string, c config.Config, offset int) error {
	var b strings.Builder
	b.WriteString("# Node B of the federated profile, written by `agentos up --profile federated`.\n")
	b.WriteString("# status, logs, redeploy and nuke read it; up rewrites it from node A's settings.\n")
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
		}
	}
	kv("AGENTOS_HOME", c.Home)
	kv("AGENTOS_DATA_DIR", c.DataDir)
	kv("AGENTOS_MODE", c.Mode)
	kv("AGENTOS_ORCHESTRATOR_ADDR", c.OrchestratorAddr)
	kv("AGENTOS_MODEL_POLICY_ADDR", c.ModelPolicyAddr)
	kv("AGENTOS_FEDERATION_ADDR", c.FederationAddr)
	kv("AGENTOS_FEDERATION_PEER_ADDR", c.FederationPeerAddr)
	kv("AGENTOS_ORCHESTRATOR_URL", c.OrchestratorURL)
	kv("AGENTOS_MODEL_POLICY_URL", c.ModelPolicyURL)
	kv("AGENTOS_FEDERATION_URL", c.FederationURL)
	kv("AGENTOS_STACK_ID", c.StackID)
	kv("AGENTOS_REGION", c.Region)
	kv("AGENTOS_ENVIRONMENT", c.Environment)
	kv("AGENTOS_STORE_URL", c.StoreURL)
	kv("AGENTOS_DEFAULT_TENANT", c.DefaultTenant)
	kv("AGENTOS_QUOTA_RUN_CREATE_QPS", strconv.FormatFloat(c.QuotaRunCreateQPS, 'f', -1, 64))
	kv("AGENTOS_QUOTA_CONCURRENT_RUNS", strconv.Itoa(c.QuotaConcurrentRuns))
	kv("AGENTOS_QUOTA_INVOKE_QPS", strconv.FormatFloat(c.QuotaInvokeQPS, 'f', -1, 64))
	kv("AGENTOS_AUDIT_SINK", c.AuditSink)
	kv("AGENTOS_HTTP_FETCH_ALLOW", c.HTTPFetchAllow)
	kv("AGENTOS_MODEL_POLICY_CONFIG", c.ModelPolicyConfig)
	kv("AGENTOS_EXECUTORS", strconv.Itoa(c.Executors))
	kv("AGENTOS_IDEMPOTENCY_TTL_HOURS", strconv.Itoa(c.IdempotencyTTLHours))
	kv("AGENTOS_LOG_LEVEL", c.LogLevel)
	kv("AGENTOS_AUDIT_CHECKPOINT_FILE", c.AuditCheckpointFile)
	kv("AGENTOS_AUDIT_CHECKPOINT_INTERVAL", c.AuditCheckpointInterval.String())
	kv(nodeBOffsetEnv, strconv.Itoa(offset))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// readNodeEnv reads a file written by writeNodeEnv. The environment is
// ignored: the file is the whole truth about node B.
func readNodeEnv(path string) (config.Config, error) {
	if _, err := os.Stat(path); err != nil {
		return config.Config{}, err
	}
	c, err := config.Load(func(string) (string, bool) { return "", false }, path)
	if err != nil {
		return c, err
	}
	return c, c.Finish()
}

// attachNodeB makes cfg node B of a, with the same services and binary.
func attachNodeB(a *supervisor.Node, cfg config.Config) error {
	avail := map[string]bool{}
	for _, s := range a.Services {
		avail[s.Name] = true
	}
	b, err := supervisor.New(cfg, nodeBEnvFile(a.Cfg.Home), avail)
	if err != nil {
		return err
	}
	b.Exe, b.HTTP = a.Exe, a.HTTP
	b.ExtraEnv = append([]string(nil), a.ExtraEnv...)
	for _, k := range append([]string{"AGENTOS_NODE_KEY_FILE"}, federationFileEnv...) {
		b.ExtraEnv = append(b.ExtraEnv, k+"=")
	}
	a.Name, b.Name = "a", "b"
	a.B = b
	return nil
}

// loadNodeB attaches node B when it exists (its node.env is there). It
// reports whether it did.
func loadNodeB(a *supervisor.Node) (bool, error) {
	path := nodeBEnvFile(a.Cfg.Home)
	cfg, err := readNodeEnv(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("node B settings %s: %w", path, err)
	}
	return true, attachNodeB(a, cfg)
}

// nodeFromFlagsWithB is nodeFromFlags plus what the last up made beyond
// the local profile: the cluster's processes, or node B.
func nodeFromFlagsWithB(cf *configFlags) (*supervisor.Node, error) {
	n, err := nodeFromFlags(cf)
	if err != nil {
		return nil, err
	}
	if ok, err := loadCluster(n); ok || err != nil {
		return n, err
	}
	if _, err := loadNodeB(n); err != nil {
		return nil, err
	}
	return n, nil
}

// peerURL is the https URL of a node's mTLS peer API.
func peerURL(c config.Config) string { return "https://" + supervisor.DialHost(c.FederationPeerAddr) }

// certHosts are the names a node certificate must carry for its peer
// address: the defaults, plus the address's host when it is not loopback.
func certHosts(peerAddr string) []string {
	host, _, err := net.SplitHostPort(supervisor.DialHost(peerAddr))
	if err != nil || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return append(append([]string(nil), pki.DefaultHosts...), host)
}

// federationFileOverrides lists the AGENTOS_FEDERATION_*_FILE settings c
// sets.
func federationFileOverrides(c config.Config) []string {
	var set []string
	for i, v := range []string{c.FederationCAFile, c.FederationCertFile, c.FederationKeyFile,
		c.FederationSigningKeyFile, c.FederationPeersFile} {
		if v != "" {
			set = append(set, federationFileEnv[i])
		}
	}
	return set
}

// FederationSetup is what setupFederation did.
type FederationSetup struct {
	CADir string            // the one CA both certificates come from
	Keys  map[string]string // stack_id -> identity public key
	Peers map[string]string // stack_id -> peer URL added to the other node
}

// setupFederation gives nodes A and B a certificate from one CA (node A's,
// created if missing) and an identity signing key, and lists each as the
// other's peer. Existing valid certificates and keys are kept, so it is
// idempotent; node B's certificate is reissued if it comes from another CA.
func setupFederation(a *supervisor.Node) (FederationSetup, error) {
	b := a.B
	fa, fb := federation.FilesIn(a.Cfg.Home), federation.FilesIn(b.Cfg.Home)
	out := FederationSetup{CADir: fa.CADir, Keys: map[string]string{}, Peers: map[string]string{}}
	for _, x := range []struct {
		n *supervisor.Node
		f federation.Files
	}{{a, fa}, {b, fb}} {
		pub, err := federation.EnsureIdentity(x.f, x.n.Cfg.StackID, fa.CADir, certHosts(x.n.Cfg.FederationPeerAddr))
		if err != nil {
			return out, fmt.Errorf("node %s (%s) identity: %w", x.n.Name, x.n.Cfg.StackID, err)
		}
		out.Keys[x.n.Cfg.StackID] = pub
	}
	// Both nodes must trust the same CA: node B's files are ours to redo.
	caPEM, err := os.ReadFile(filepath.Join(fa.CADir, pki.CAFile))
	if err != nil {
		return out, fmt.Errorf("federation CA: %w", err)
	}
	if got, _ := os.ReadFile(fb.CA); !bytes.Equal(got, caPEM) {
		for _, p := range []string{fb.CA, fb.Cert, fb.Key} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return out, err
			}
		}
		if _, err := federation.EnsureIdentity(fb, b.Cfg.StackID, fa.CADir, certHosts(b.Cfg.FederationPeerAddr)); err != nil {
			return out, fmt.Errorf("node b (%s) identity: %w", b.Cfg.StackID, err)
		}
	}
	if got, _ := os.ReadFile(fa.CA); !bytes.Equal(got, caPEM) {
		return out, fmt.Errorf("node a's certificate %s chains to %s, not to the federation CA in %s; remove %s to let up reissue it",
			fa.Cert, fa.CA, fa.CADir, fa.Cert)
	}
	for _, x := range []struct {
		self, other *supervisor.Node
		selfF       federation.Files
		otherF      federation.Files
	}{{a, b, fa, fb}, {b, a, fb, fa}} {
		url := peerURL(x.self.Cfg)
		entry, err := federation.PeerEntry(x.selfF, x.self.Cfg.StackID, url, x.self.Cfg.Region)
		if err != nil {
			return out, fmt.Errorf("peer entry for node %s: %w", x.self.Name, err)
		}
		if _, err := peers.Add(x.otherF.Peers, entry); err != nil {
			return out, fmt.Errorf("node %s peers file %s: %w", x.other.Name, x.otherF.Peers, err)
		}
		out.Peers[x.self.Cfg.StackID] = url
	}
	return out, nil
}

// nodeFederationFiles returns where a node's federation service finds its
// identity: the environment's overrides apply to node A only.
func nodeFederationFiles(n *supervisor.Node) federation.Files {
	if n.Name == "b" {
		return federation.FilesIn(n.Cfg.Home)
	}
	return node.FederationFiles(n.Cfg)
}
