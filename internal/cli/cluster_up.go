package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nexixai/agentos/internal/supervisor"
)

// setupCluster resolves --replicas (flag, else the last up's, else
// DefaultReplicas) and makes n the cluster profile's process list.
func setupCluster(n *supervisor.Node, o *upOptions) error {
	st, ok, err := readClusterState(n.Cfg.Home)
	if err != nil {
		return err
	}
	switch {
	case o.replicas != 0:
	case ok:
		o.replicas = st.Replicas
	default:
		o.replicas = DefaultReplicas
	}
	switch {
	case o.natsServers != 0:
	case ok:
		o.natsServers = st.NATSServers
	default:
		o.natsServers = DefaultNATSServers
	}
	if n.Cfg.PostgresURL == "" && ok && st.ExternalPostgres {
		return fmt.Errorf("%s says the store is an external PostgreSQL: set AGENTOS_POSTGRES_URL (or remove the file to run the profile's own)", clusterStateFile(n.Cfg.Home))
	}
	if n.Cfg.BusURL == "" && ok && st.ExternalNATS {
		return fmt.Errorf("%s says the bus is an external NATS: set AGENTOS_BUS_URL (or remove the file to run the profile's own)", clusterStateFile(n.Cfg.Home))
	}
	return applyCluster(n, clusterSpec{replicas: o.replicas, postgresURL: n.Cfg.PostgresURL,
		natsServers: o.natsServers, busURL: n.Cfg.BusURL})
}

// preflightCluster stops the replicas a smaller --replicas drops, records
// the profile (cluster.json) and writes the gateway's upstreams file; when
// the list changed (another --replicas, other ports) it stops the gateway,
// which reads the file at start only, for boot to start it again.
func preflightCluster(n *supervisor.Node, o upOptions) error {
	if o.replicas < 1 {
		return &checkError{check: "preflight profile", next: "agentos up --profile cluster --replicas 2", err: validReplicas(o.replicas)}
	}
	if err := stopSurplus(n, o.replicas, o.natsServers); err != nil {
		return &checkError{check: "preflight surplus replicas", next: "agentos status", err: err}
	}
	st := clusterState{Replicas: o.replicas, ExternalPostgres: n.Cfg.PostgresURL != "",
		NATSServers: o.natsServers, ExternalNATS: servicesOf(n, supervisor.KindNATS)[0].External}
	if err := writeClusterState(n.Cfg.Home, st); err != nil {
		return &checkError{check: "preflight cluster settings", next: "agentos up --home <writable dir>", err: err}
	}
	changed, err := writeUpstreams(n)
	if err != nil {
		return &checkError{check: "preflight gateway upstreams", next: "agentos up --profile cluster --replicas 2", err: err}
	}
	if changed {
		// A running gateway still has the old list: boot starts it again.
		if _, err := n.Stop("gateway", 15*time.Second); err != nil {
			return &checkError{check: "preflight gateway upstreams", service: "gateway", next: "agentos status", err: err}
		}
	}
	return nil
}

// portFlag names the setting that moves a process's port.
func portFlag(s supervisor.Service) string {
	switch {
	case s.KindOf() == supervisor.KindNATS:
		return "AGENTOS_GATEWAY_ADDR= (nats server k is on its port + 6 + (k-1)*100) or AGENTOS_BUS_URL="
	case s.Name == s.KindOf() && s.Name != "postgres" && s.Name != "gateway":
		return "--" + s.Name + "-addr"
	case s.Name == "gateway":
		return "AGENTOS_GATEWAY_ADDR="
	case s.Name == "postgres":
		return "AGENTOS_GATEWAY_ADDR= (postgres is on its port + 5) or AGENTOS_POSTGRES_URL="
	}
	return "--" + s.KindOf() + "-addr (replica k is on its port + (k-1)*100)"
}

// afterHealthy finishes a process that just became healthy: the managed
// PostgreSQL gets the agentos database; after the last managed NATS
// server, JetStream must be ready on every one (in a cluster: a meta
// leader elected) before the replicas create their streams.
func afterHealthy(ctx context.Context, n *supervisor.Node, s supervisor.Service, timeout time.Duration) error {
	if s.External {
		return nil
	}
	switch s.KindOf() {
	case supervisor.KindPostgres:
		return supervisor.EnsureDatabase(ctx, s)
	case supervisor.KindNATS:
		ns := servicesOf(n, supervisor.KindNATS)
		if ns[len(ns)-1].Name == s.Name {
			return supervisor.WaitNATSReady(ctx, n, ns, timeout)
		}
	}
	return nil
}

// bootCluster waits for the gateway to have every replica in rotation;
// for redeploy it first restarts the replicas one pair at a time.
func bootCluster(ctx context.Context, n *supervisor.Node, p *Progress, rep *Report, o upOptions, rolling bool) error {
	p.Status("waiting for the gateway to have every replica in rotation")
	if err := waitGatewayAll(ctx, n, o.bootTimeout); err != nil {
		return &checkError{check: "boot gateway rotation", service: "gateway", next: "agentos logs gateway --tail 100", err: err}
	}
	if !rolling {
		return nil
	}
	for _, s := range rollingOrder(n) {
		if err := restartOne(ctx, n, p, rep, o, s); err != nil {
			return err
		}
	}
	return nil
}

// rollingOrder is what redeploy restarts, one at a time: orchestrator k
// after model-policy k (the orchestrator calls its own number), then
// federation. PostgreSQL, NATS and the gateway, the entry address, stay
// up.
func rollingOrder(n *supervisor.Node) []supervisor.Service {
	mps, orchs := servicesOf(n, "model-policy"), servicesOf(n, "orchestrator")
	var out []supervisor.Service
	for k := range orchs {
		out = append(out, mps[k], orchs[k])
	}
	return append(out, servicesOf(n, "federation")...)
}

// restartOne restarts one replica and waits until the gateway has it (and
// every other) back in rotation, so at most one is ever out. Stopping it
// closes its listener first: the gateway sends what it refuses to
// another replica.
func restartOne(ctx context.Context, n *supervisor.Node, p *Progress, rep *Report, o upOptions, s supervisor.Service) error {
	fail := func(err error) error {
		return &checkError{check: "redeploy " + s.Name, service: s.Name, node: n, next: "agentos logs " + s.Name + " --tail 100", err: err}
	}
	p.Status("rolling: restarting " + s.Name)
	if _, err := n.Stop(s.Name, 15*time.Second); err != nil {
		return fail(err)
	}
	pid, err := n.Start(s)
	if err != nil {
		return fail(err)
	}
	if err := n.WaitHealthy(ctx, s, pid, o.bootTimeout); err != nil {
		return fail(err)
	}
	// Ready, as the gateway's probe wants it, before the next goes out:
	// the gateway may not have probed it yet.
	if err := waitReady(ctx, n, s, o.bootTimeout); err != nil {
		return fail(err)
	}
	if err := waitGatewayAll(ctx, n, o.bootTimeout); err != nil {
		return fail(err)
	}
	for i := range rep.Services {
		if rep.Services[i].Name == s.Name {
			rep.Services[i].PID, rep.Services[i].Action = pid, "restarted (rolling)"
		}
	}
	p.Info("%-15s %-6s pid %-7d %s", s.Name, "up", pid, "restarted (rolling)")
	return nil
}

// printClusterAddresses lists every process of the cluster profile, the
// gateway (the entry address) first.
func printClusterAddresses(out io.Writer, n *supervisor.Node) {
	gw, _ := n.Service("gateway")
	fmt.Fprintf(out, "  Gateway:         %s  (the entry address: every API; use it as the product API)\n", gw.URL)
	for _, s := range n.Services {
		if s.Name == "gateway" {
			continue
		}
		fmt.Fprintf(out, "  %-16s %s\n", s.Name+":", s.DisplayURL())
	}
	fmt.Fprintf(out, "  Upstreams:       %s\n", upstreamsFile(n.Cfg.Home))
	fmt.Fprintln(out, "  The addresses below are the first replicas'.")
	fmt.Fprintln(out)
}

// stopSurplus stops the replicas numbered above keep, and the NATS
// servers above keepNATS, that the last up started (cluster.json's
// counts), before the gateway's list shrinks.
func stopSurplus(n *supervisor.Node, keep, keepNATS int) error {
	st, ok, err := readClusterState(n.Cfg.Home)
	if err != nil || !ok {
		return err
	}
	// Another NATS topology (1 <-> 3 servers, or an external bus): the
	// running servers' routes are wrong, so all go, for boot to start the
	// new ones.
	if st.NATSServers != keepNATS || st.ExternalNATS != servicesOf(n, supervisor.KindNATS)[0].External {
		for k := st.NATSServers; k >= 1; k-- {
			if _, err := n.Stop(replicaName("nats", k), 15*time.Second); err != nil {
				return err
			}
		}
	}
	for k := st.Replicas; k > keep; k-- {
		for _, kind := range []string{"orchestrator", "model-policy"} {
			if _, err := n.Stop(replicaName(kind, k), 15*time.Second); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitReady polls a service's /readyz until it answers 200.
func waitReady(ctx context.Context, n *supervisor.Node, s supervisor.Service, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := getReady(ctx, n.HTTP, s.URL)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", s.Name, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
