package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nexixai/agentos/gateway"
	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/supervisor"
)

// The cluster profile: PostgreSQL, N model-policy and N orchestrator
// replicas on it, federation once and the gateway in front, on one
// machine.
const (
	profileCluster = "cluster"
	// DefaultReplicas is --replicas' default.
	DefaultReplicas = 2
	// maxReplicas keeps the derived ports (step 100) under 65535 and the
	// machine sane.
	maxReplicas = 20
	// ReplicaPortStep separates a service's replicas: replica k listens on
	// the first replica's port + (k-1)*ReplicaPortStep (50081, 50181, ...).
	ReplicaPortStep = 100
	// PostgresPortOffset puts the managed PostgreSQL on the gateway's port
	// plus this (127.0.0.1:50085 by default).
	PostgresPortOffset = 5
	// NATSPortOffset puts NATS server k's client port on the gateway's
	// port plus this plus (k-1)*ReplicaPortStep (50086, 50186, 50286);
	// its HTTP monitor is on the next port and its route listener (a
	// cluster's) on the one after (50087, 50088).
	NATSPortOffset = 6
	// DefaultNATSServers is --nats-servers' default.
	DefaultNATSServers = 1
	clusterStateName   = "cluster.json"
)

// clusterState is what `up --profile cluster` records in
// $AGENTOS_HOME/cluster.json so that status, logs, redeploy and nuke find
// the same processes.
type clusterState struct {
	Replicas int `json:"replicas"`
	// ExternalPostgres: the store is AGENTOS_POSTGRES_URL's server, which
	// the profile neither starts nor stops (the URL is not recorded: it
	// may carry a password).
	ExternalPostgres bool `json:"external_postgres"`
	// NATSServers is how many NATS servers the profile runs (1 or 3; 0 in
	// a file from before NATS: 1).
	NATSServers int `json:"nats_servers,omitempty"`
	// ExternalNATS: the bus is AGENTOS_BUS_URL's NATS, neither started
	// nor stopped (the URL is not recorded: it may carry credentials).
	ExternalNATS bool `json:"external_nats,omitempty"`
}

func clusterStateFile(home string) string { return filepath.Join(home, clusterStateName) }

// readClusterState reads cluster.json; ok is false when there is none.
func readClusterState(home string) (st clusterState, ok bool, err error) {
	b, err := os.ReadFile(clusterStateFile(home))
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("%s: %w", clusterStateFile(home), err)
	}
	if st.NATSServers == 0 {
		st.NATSServers = DefaultNATSServers
	}
	if err := validReplicas(st.Replicas); err != nil {
		return st, true, err
	}
	return st, true, validNATSServers(st.NATSServers)
}

func validNATSServers(n int) error {
	if n != 1 && n != 3 {
		return fmt.Errorf("--nats-servers %d: want 1 or 3", n)
	}
	return nil
}

func writeClusterState(home string, st clusterState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	return os.WriteFile(clusterStateFile(home), append(b, '\n'), 0o644)
}

func validReplicas(n int) error {
	if n < 1 || n > maxReplicas {
		return fmt.Errorf("--replicas %d: want 1 to %d", n, maxReplicas)
	}
	return nil
}

// replicaName is "orchestrator" for the first replica, "orchestrator-2"
// for the second, ...
func replicaName(kind string, k int) string {
	if k == 1 {
		return kind
	}
	return kind + "-" + strconv.Itoa(k)
}

// clusterSpec is what the profile's process list derives from.
type clusterSpec struct {
	replicas    int
	postgresURL string // AGENTOS_POSTGRES_URL; "" runs the managed server
	natsServers int    // 1 or 3 managed NATS servers (0: 1)
	busURL      string // AGENTOS_BUS_URL; "" runs the managed NATS server(s)
}

// applyCluster turns a node into the cluster profile's process list, in
// start order: the store, the bus (1 or 3 NATS servers), the
// model-policy and orchestrator replicas, federation, the gateway. Every
// process gets the PostgreSQL store URL and the bus URL.
func applyCluster(n *supervisor.Node, spec clusterSpec) error {
	if err := validReplicas(spec.replicas); err != nil {
		return err
	}
	if _, ok := n.Service("model-policy"); !ok {
		return errors.New("the cluster profile needs `agentos serve model-policy`, which this build lacks")
	}
	pg, err := postgresService(n, spec.postgresURL)
	if err != nil {
		return err
	}
	n.Cfg.StoreURL = pg.URL
	procs := []supervisor.Service{pg}
	ns, err := natsServices(n, spec)
	if err != nil {
		return err
	}
	procs = append(procs, ns...)
	mps, err := replicas(n, "model-policy", spec.replicas, nil)
	if err != nil {
		return err
	}
	orchs, err := replicas(n, "orchestrator", spec.replicas, func(k int) []string {
		// Each orchestrator replica calls the model-policy replica of its
		// number: no loop through the gateway (which routes /v1/health
		// to the orchestrators), and redeploy restarts them as a pair.
		return []string{"AGENTOS_MODEL_POLICY_URL=" + mps[k-1].URL}
	})
	if err != nil {
		return err
	}
	procs = append(append(procs, mps...), orchs...)
	if fed, ok := n.Service("federation"); ok {
		procs = append(procs, fed)
	}
	gw, err := gatewayService(n)
	if err != nil {
		return err
	}
	n.Services = append(procs, gw)
	return nil
}

// replicas derives count replicas of a service from its first (the
// node's *_ADDR setting); env, when set, gives replica k's own settings.
func replicas(n *supervisor.Node, kind string, count int, env func(k int) []string) ([]supervisor.Service, error) {
	first, ok := n.Service(kind)
	if !ok {
		return nil, fmt.Errorf("this build has no `agentos serve %s`", kind)
	}
	key := "AGENTOS_" + strings.ToUpper(strings.ReplaceAll(kind, "-", "_")) + "_ADDR"
	var out []supervisor.Service
	for k := 1; k <= count; k++ {
		addr, err := shiftPort(first.Addr, (k-1)*ReplicaPortStep)
		if err != nil {
			return nil, fmt.Errorf("%s replica %d: %w", kind, k, err)
		}
		s := first
		s.Name, s.Kind, s.Addr = replicaName(kind, k), kind, addr
		if k > 1 {
			s.URL = "http://" + supervisor.DialHost(addr)
		}
		s.Env = []string{key + "=" + addr}
		if env != nil {
			s.Env = append(s.Env, env(k)...)
		}
		out = append(out, s)
	}
	return out, nil
}

// postgresService is the managed server on the gateway's port plus
// PostgresPortOffset, or the external one at raw (AGENTOS_POSTGRES_URL).
func postgresService(n *supervisor.Node, raw string) (supervisor.Service, error) {
	if raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			return supervisor.Service{}, fmt.Errorf("AGENTOS_POSTGRES_URL %q: want postgres://user:password@host:port/database", supervisor.Service{URL: raw}.DisplayURL())
		}
		return supervisor.Service{Name: "postgres", Kind: supervisor.KindPostgres, Addr: u.Host, URL: raw, External: true}, nil
	}
	addr, err := shiftPort(n.Cfg.GatewayAddr, PostgresPortOffset)
	if err != nil {
		return supervisor.Service{}, fmt.Errorf("postgres address: %w", err)
	}
	pw, err := supervisor.PostgresPassword(n.Cfg.Home)
	if err != nil {
		return supervisor.Service{}, fmt.Errorf("postgres password: %w", err)
	}
	return supervisor.Service{Name: "postgres", Kind: supervisor.KindPostgres, Addr: addr,
		URL: supervisor.PostgresURL(addr, pw)}, nil
}

// natsServices is the managed NATS server(s), or the external one at
// spec.busURL (AGENTOS_BUS_URL), and points n's bus at them: with three
// servers a cluster (each routes to the others) whose streams keep three
// replicas.
func natsServices(n *supervisor.Node, spec clusterSpec) ([]supervisor.Service, error) {
	if spec.busURL != "" {
		// config.Load has checked its form (nats://host:port[,...]).
		n.Cfg.BusURL = spec.busURL
		if n.Cfg.BusReplicas < 1 {
			n.Cfg.BusReplicas = 1
		}
		return []supervisor.Service{{Name: "nats", Kind: supervisor.KindNATS, Addr: busHosts(spec.busURL), URL: spec.busURL, External: true}}, nil
	}
	count := spec.natsServers
	if count == 0 {
		count = DefaultNATSServers
	}
	if err := validNATSServers(count); err != nil {
		return nil, err
	}
	type ports struct{ client, monitor, route string }
	var ps []ports
	var routes, urls []string
	for k := 1; k <= count; k++ {
		var p ports
		for i, dst := range []*string{&p.client, &p.monitor, &p.route} {
			a, err := shiftPort(n.Cfg.GatewayAddr, NATSPortOffset+i+(k-1)*ReplicaPortStep)
			if err != nil {
				return nil, fmt.Errorf("nats server %d address: %w", k, err)
			}
			*dst = a
		}
		ps = append(ps, p)
		routes = append(routes, "nats://"+supervisor.DialHost(p.route))
		urls = append(urls, "nats://"+supervisor.DialHost(p.client))
	}
	// Authentication on: the services connect with the control key,
	// workers with the keys `agentos workers add` registered.
	control, err := supervisor.EnsureControlNkey(n.Cfg.Home)
	if err != nil {
		return nil, fmt.Errorf("nats control key: %w", err)
	}
	var out []supervisor.Service
	for k, p := range ps {
		name := replicaName("nats", k+1)
		args := []string{"--name", name, "--addr", p.client, "--monitor-addr", p.monitor, "--control-nkey-file", control}
		if count > 1 {
			args = append(args, "--cluster-addr", p.route, "--routes", strings.Join(routes, ","))
		}
		out = append(out, supervisor.Service{Name: name, Kind: supervisor.KindNATS, Addr: p.client,
			URL: urls[k], Monitor: p.monitor, Args: args})
	}
	n.Cfg.BusURL, n.Cfg.BusReplicas, n.Cfg.BusNkeyFile = strings.Join(urls, ","), count, control
	return out, nil
}

// busHosts is the host:port list of a bus URL (for status).
func busHosts(raw string) string {
	var hosts []string
	for _, part := range strings.Split(raw, ",") {
		if u, err := url.Parse(strings.TrimSpace(part)); err == nil {
			hosts = append(hosts, u.Host)
		}
	}
	return strings.Join(hosts, ",")
}

// gatewayService is `agentos serve gateway` on AGENTOS_GATEWAY_ADDR in
// front of the replicas listed in $AGENTOS_HOME/gateway-upstreams.yaml.
func gatewayService(n *supervisor.Node) (supervisor.Service, error) {
	if !availableServices()["gateway"] {
		return supervisor.Service{}, errors.New("the cluster profile needs `agentos serve gateway`, which this build lacks")
	}
	return supervisor.Service{Name: "gateway", Addr: n.Cfg.GatewayAddr,
		URL: "http://" + supervisor.DialHost(n.Cfg.GatewayAddr), HealthPath: "/healthz",
		Env: []string{"AGENTOS_GATEWAY_ADDR=" + n.Cfg.GatewayAddr,
			"AGENTOS_GATEWAY_UPSTREAMS_FILE=" + upstreamsFile(n.Cfg.Home)}}, nil
}

func upstreamsFile(home string) string { return filepath.Join(home, "gateway-upstreams.yaml") }

// clusterUpstreams lists every replica of n for the gateway.
func clusterUpstreams(n *supervisor.Node) gateway.Upstreams {
	var u gateway.Upstreams
	for _, s := range n.Services {
		switch s.KindOf() {
		case gateway.Orchestrator:
			u.Orchestrator = append(u.Orchestrator, s.URL)
		case gateway.ModelPolicy:
			u.ModelPolicy = append(u.ModelPolicy, s.URL)
		case gateway.Federation:
			u.Federation = append(u.Federation, s.URL)
		}
	}
	return u
}

// writeUpstreams writes the gateway's upstreams file for n's replicas
// and reports whether it changed (the gateway reads it at start only).
func writeUpstreams(n *supervisor.Node) (bool, error) {
	u := clusterUpstreams(n)
	if err := u.Validate(); err != nil {
		return false, err
	}
	b, err := yaml.Marshal(u)
	if err != nil {
		return false, err
	}
	b = append([]byte("# Written by `agentos up --profile cluster` from its replicas; up rewrites it.\n"), b...)
	if old, err := os.ReadFile(upstreamsFile(n.Cfg.Home)); err == nil && bytes.Equal(old, b) {
		return false, nil
	}
	return true, os.WriteFile(upstreamsFile(n.Cfg.Home), b, 0o644)
}

// loadCluster makes n the cluster profile when cluster.json exists under
// its home, with the recorded replica count. It reports whether it did.
func loadCluster(n *supervisor.Node) (bool, error) {
	st, ok, err := readClusterState(n.Cfg.Home)
	if err != nil || !ok {
		return false, err
	}
	spec := clusterSpec{replicas: st.Replicas, postgresURL: n.Cfg.PostgresURL,
		natsServers: st.NATSServers, busURL: n.Cfg.BusURL}
	if st.ExternalPostgres && spec.postgresURL == "" {
		return false, fmt.Errorf("%s says the store is an external PostgreSQL: set AGENTOS_POSTGRES_URL", clusterStateFile(n.Cfg.Home))
	}
	if st.ExternalNATS && spec.busURL == "" {
		return false, fmt.Errorf("%s says the bus is an external NATS: set AGENTOS_BUS_URL", clusterStateFile(n.Cfg.Home))
	}
	return true, applyCluster(n, spec)
}

// servicesOf lists n's services of one kind, in order.
func servicesOf(n *supervisor.Node, kind string) []supervisor.Service {
	var out []supervisor.Service
	for _, s := range n.Services {
		if s.KindOf() == kind {
			out = append(out, s)
		}
	}
	return out
}

// isCluster reports whether n is the cluster profile's.
func isCluster(n *supervisor.Node) bool {
	_, ok := n.Service("gateway")
	return ok
}

// gatewayPools is the body of the gateway's /readyz.
type gatewayPools struct {
	Pools map[string]struct {
		Healthy int `json:"healthy"`
		Total   int `json:"total"`
	} `json:"pools"`
}

// waitGatewayAll waits until the gateway has every replica of every pool
// in rotation.
func waitGatewayAll(ctx context.Context, n *supervisor.Node, timeout time.Duration) error {
	gw, _ := n.Service("gateway")
	c := &apiclient.Client{HTTP: n.HTTP}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		var body gatewayPools
		last = c.Do(ctx, http.MethodGet, gw.URL, "/readyz", nil, &body)
		if last == nil {
			if last = poolsComplete(body); last == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway %s: not every replica in rotation after %s: %v", gw.URL, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// poolsComplete is nil when every pool has all its replicas healthy.
func poolsComplete(b gatewayPools) error {
	for name, p := range b.Pools {
		if p.Healthy < p.Total {
			return fmt.Errorf("pool %s: %d of %d replicas healthy", name, p.Healthy, p.Total)
		}
	}
	return nil
}
