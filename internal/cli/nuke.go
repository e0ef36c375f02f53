package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/federation/peers"
)

func newNukeCmd() *cobra.Command {
	var yes, hard bool
	cmd := &cobra.Command{
		Use:   "nuke --yes-really [--hard]",
		Short: "Stop the node and remove its runtime state (--hard: also its data)",
		Long: `nuke stops every service and removes run/ (pid files) and logs/.
With --hard it also removes data/ (runs, tenants, audit), credentials.json,
secrets/ and keys/ (the node's signing key). Reports under reports/ are kept. It refuses to run without
--yes-really. When node B of the federated profile exists it is stopped too,
and --hard removes its whole home ($AGENTOS_HOME/node-b) and its entry in
node A's peers file.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().BoolVar(&yes, "yes-really", false, "confirm that the node should be stopped and its state removed")
	cmd.Flags().BoolVar(&hard, "hard", false, "also remove data/, credentials.json and secrets/ (destructive)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !yes {
			what := "stop every service and remove run/ and logs/"
			if hard {
				what += ", data/ and credentials.json (ALL DATA)"
			}
			return &ExitError{Code: 2, Err: fmt.Errorf("refusing to nuke without --yes-really (it would %s)", what)}
		}
		n, err := nodeFromFlagsWithB(cf)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		p := NewProgress(out, isTerminal(os.Stdout))
		profile := profileLocal
		if n.B != nil {
			profile = profileFederated
			fmt.Fprintf(out, "agentos nuke: node %s in %s and node %s in %s\n", n.Cfg.StackID, n.Cfg.Home, n.B.Cfg.StackID, n.B.Cfg.Home)
		}
		rep := newReport("nuke", n, profile)
		err = nuke(n, p, rep, hard)
		return finishReport(out, n, rep, p, err)
	}
	return cmd
}

// nuke stops the services of every node (node B first) and removes their
// state. For node B, --hard removes its whole home ($AGENTOS_HOME/node-b).
func nuke(a *Node, p *Progress, rep *Report, hard bool) error {
	p.Phase("stop")
	nodes := a.all()
	total := 0
	for _, n := range nodes {
		total += len(n.Services)
	}
	stopped := 0
	for j := len(nodes) - 1; j >= 0; j-- {
		n := nodes[j]
		for i := len(n.Services) - 1; i >= 0; i-- {
			s := n.Services[i]
			was, err := n.stop(s.Name, 15*time.Second)
			if err != nil {
				p.End(err, "")
				return &checkError{check: "stop " + n.label(s.Name), service: s.Name, node: n, next: "agentos status", err: err}
			}
			action := "not running"
			if was {
				action = "stopped"
			}
			rep.Services = append(rep.Services, ServiceReport{Name: s.Name, Node: n.Name, Address: s.Addr, URL: s.URL, Action: action, LogFile: n.logFile(s.Name)})
			stopped++
			p.Milestone("services stopped", stopped, total)
		}
	}
	p.Phase("remove")
	var targets []string
	for _, n := range nodes {
		switch {
		case n.Name == "b" && hard:
			targets = append(targets, n.Cfg.Home)
		case hard:
			targets = append(targets, n.runDir(), n.logDir(), n.Cfg.DataDir, n.Cfg.CredentialsFile(),
				filepath.Join(n.Cfg.Home, "secrets"), filepath.Join(n.Cfg.Home, "keys"))
		default:
			targets = append(targets, n.runDir(), n.logDir())
		}
	}
	for i, t := range targets {
		if err := os.RemoveAll(t); err != nil && !errors.Is(err, os.ErrNotExist) {
			p.End(err, "")
			return &checkError{check: "remove " + t, next: "rm -rf " + t, err: err}
		}
		p.Milestone("removed", i+1, len(targets))
	}
	if hard && a.B != nil {
		// Node B's identity is gone: node A must not keep trusting it.
		path := nodeFederationFiles(a).Peers
		if err := peers.Remove(path, a.B.Cfg.StackID); err != nil && !errors.Is(err, peers.ErrUnknownPeer) && !errors.Is(err, os.ErrNotExist) {
			p.End(err, "")
			return &checkError{check: "remove peer " + a.B.Cfg.StackID, node: a, next: "agentos peers remove " + a.B.Cfg.StackID, err: err}
		}
	}
	rep.Credentials.Exists = fileExists(a.Cfg.CredentialsFile())
	detail := "runtime state removed; data kept"
	if hard {
		detail = "runtime state and data removed; reports kept"
		if a.B != nil {
			detail += "; node B's home removed"
		}
	}
	p.End(nil, detail)
	return nil
}
