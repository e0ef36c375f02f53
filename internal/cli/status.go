package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/supervisor"
)

// ServiceStatus is one row of `agentos status`.
type ServiceStatus struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	State     string `json:"state"` // healthy, unhealthy, stopped, stale-pid, external
	Version   string `json:"version"`
	Address   string `json:"address"`
	URL       string `json:"url"`
	UptimeSec int64  `json:"uptime_seconds"`
	LogBytes  int64  `json:"log_bytes"`
	Error     string `json:"error,omitempty"`
}

// NodeStatus is `agentos status --json`.
type NodeStatus struct {
	Node      string          `json:"node,omitempty"` // "a" or "b" when node B exists
	StackID   string          `json:"stack_id"`
	Home      string          `json:"home"`
	Mode      string          `json:"mode"`
	DataDir   string          `json:"data_dir"`
	DataBytes int64           `json:"data_bytes"`
	Services  []ServiceStatus `json:"services"`
	// Peers are the stack_ids in the node's federation peers file.
	Peers []string `json:"peers,omitempty"`
	// Healthy is true when every service (of both nodes, at the top level)
	// is healthy.
	Healthy bool `json:"healthy"`
	// NodeB is node B of the federated profile, when it exists.
	NodeB *NodeStatus `json:"node_b,omitempty"`
	// Workers are the registered worker nodes (cluster profile), with
	// their last heartbeat when live; WorkersError says why they could
	// not be listed. Workers do not count towards Healthy.
	Workers      []workerRecord `json:"workers,omitempty"`
	WorkersError string         `json:"workers_error,omitempty"`
}

func newStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each service: pid, health, version, address, uptime, sizes",
		Long: `status shows every service of the node; when node B of the federated profile
exists (` + "`agentos up --profile federated`" + `) it lists both nodes; in the cluster
profile every process: postgres, nats (each NATS server), each model-policy and orchestrator replica,
federation and the gateway. It exits 1 if any service is not healthy.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		n, err := nodeFromFlagsWithB(cf)
		if err != nil {
			return err
		}
		st := nodeStatus(cmd.Context(), n)
		if n.B != nil {
			b := nodeStatus(cmd.Context(), n.B)
			st.NodeB = &b
			st.Healthy = st.Healthy && b.Healthy
		}
		out := cmd.OutOrStdout()
		if asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(st); err != nil {
				return err
			}
		} else {
			printNodeStatus(out, st)
			if st.NodeB != nil {
				fmt.Fprintln(out)
				printNodeStatus(out, *st.NodeB)
			}
			if !st.Healthy {
				fmt.Fprintf(out, "not every service is healthy; next: agentos up%s\n", profileFlag(n))
			}
		}
		if !st.Healthy {
			return &ExitError{Code: 1}
		}
		return nil
	}
	return cmd
}

// printNodeStatus prints one node's table.
func printNodeStatus(out io.Writer, st NodeStatus) {
	name := "node " + st.StackID
	if st.Node != "" {
		name = "node " + st.Node + ": " + st.StackID
	}
	fmt.Fprintf(out, "%s (%s mode), home %s\n\n", name, st.Mode, st.Home)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPID\tSTATE\tVERSION\tADDRESS\tUPTIME\tLOG")
	for _, s := range st.Services {
		pid, up := "-", "-"
		if s.PID > 0 {
			pid = fmt.Sprint(s.PID)
		}
		if s.UptimeSec > 0 {
			up = (time.Duration(s.UptimeSec) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, pid, s.State, firstNonEmpty(s.Version, "-"), s.Address, up, humanBytes(s.LogBytes))
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "\ndata: %s (%s)\n", st.DataDir, humanBytes(st.DataBytes))
	if len(st.Peers) > 0 {
		fmt.Fprintf(out, "peers: %s\n", strings.Join(st.Peers, ", "))
	}
	if len(st.Workers) > 0 {
		fmt.Fprintln(out)
		_ = printWorkers(out, st.Workers)
	}
	if st.WorkersError != "" {
		fmt.Fprintf(out, "workers: %s\n", st.WorkersError)
	}
}

// nodeStatus inspects every service of one node.
func nodeStatus(ctx context.Context, n *supervisor.Node) NodeStatus {
	ns := NodeStatus{Node: n.Name, StackID: n.Cfg.StackID, Home: n.Cfg.Home, Mode: n.Cfg.Mode, DataDir: n.Cfg.DataDir,
		DataBytes: supervisor.DirSize(n.Cfg.DataDir), Healthy: true}
	if _, ok := n.Service("federation"); ok {
		if ps, err := peers.Load(nodeFederationFiles(n).Peers); err == nil {
			for _, p := range ps {
				ns.Peers = append(ns.Peers, p.StackID)
			}
		}
	}
	for _, s := range n.Services {
		ps := n.Inspect(ctx, s)
		ss := ServiceStatus{Name: s.Name, PID: ps.PID, Version: ps.Version, Address: s.Addr, URL: s.DisplayURL(), Error: ps.Err}
		if fi, err := os.Stat(n.LogFile(s.Name)); err == nil {
			ss.LogBytes = fi.Size()
		}
		switch {
		case s.External && ps.Healthy:
			ss.State = "healthy (external)"
		case s.External:
			ss.State = "unreachable (external)"
		case ps.Healthy && ps.Alive:
			ss.State = "healthy"
		case ps.Healthy:
			ss.State = "healthy (external)"
			ss.PID = 0
		case ps.Alive:
			ss.State = "unhealthy"
		case ps.PID != 0:
			ss.State = "stale-pid"
		default:
			ss.State = "stopped"
		}
		if ps.Alive && !ps.Started.IsZero() {
			ss.UptimeSec = int64(time.Since(ps.Started).Seconds())
		}
		if !ps.Healthy {
			ns.Healthy = false
		}
		ns.Services = append(ns.Services, ss)
	}
	if isCluster(n) && ns.Healthy {
		ns.Workers, ns.WorkersError = clusterWorkers(ctx, n)
	}
	return ns
}

// clusterWorkers lists the registered workers through the admin API with
// the platform admin credential under the home.
func clusterWorkers(ctx context.Context, n *supervisor.Node) ([]workerRecord, string) {
	creds, err := loadCredentials(n.Cfg.CredentialsFile())
	if err != nil || creds.PlatformAdmin.Token == "" {
		return nil, ""
	}
	gw, _ := n.Service("gateway")
	c := &apiclient.Client{HTTP: n.HTTP, Token: creds.PlatformAdmin.Token}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ws, err := listWorkers(ctx, c.Do, gw.URL)
	if err != nil {
		return nil, err.Error()
	}
	return ws, ""
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
