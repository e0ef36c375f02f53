package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/internal/supervisor"
)

func newNukeCmd() *cobra.Command {
	var yes, hard bool
	cmd := &cobra.Command{
		Use:   "nuke [--hard [--yes]]",
		Short: "Stop the node (--hard: also delete its data, after confirmation)",
		Long: `nuke stops every service and removes run/ (pid files) and logs/. Data,
credentials and keys are kept: ` + "`agentos up`" + ` starts the same node again.

With --hard it also removes data/ (runs, tenants, audit), credentials.json,
secrets/ and keys/ (the node's signing key); reports under reports/ are
kept. --hard asks for confirmation on a terminal (type "yes"); scripts pass
--yes. Without a terminal and without --yes, --hard refuses (exit 2) and
removes nothing. --yes-really is accepted as another name for --yes.

When node B of the federated profile exists it is stopped too, and --hard
removes its whole home ($AGENTOS_HOME/node-b) and its entry in node A's
peers file.

In the cluster profile it stops the gateway, every replica, federation and
the profile's own NATS servers and PostgreSQL (an AGENTOS_BUS_URL or
AGENTOS_POSTGRES_URL server is left alone); --hard also removes the
PostgreSQL cluster ($AGENTOS_HOME/postgres), the NATS stores
($AGENTOS_HOME/nats), cluster.json and gateway-upstreams.yaml.`,
		Example: `  agentos nuke                 # stop the node, keep its data
  agentos nuke --hard          # stop and delete everything (asks first)
  agentos nuke --hard --yes    # the same, from a script`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().BoolVar(&hard, "hard", false, "also remove data/, credentials.json, secrets/ and keys/ (destructive; asks for confirmation)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "confirm --hard without asking (for scripts)")
	cmd.Flags().BoolVar(&yes, "yes-really", false, "the same as --yes (kept for existing scripts)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		n, err := nodeFromFlagsWithB(cf)
		if err != nil {
			return err
		}
		if hard && !yes {
			if err := confirmHard(cmd.InOrStdin(), cmd.ErrOrStderr(), n); err != nil {
				return err
			}
		}
		out := cmd.OutOrStdout()
		p := NewProgress(out, isTerminal(os.Stdout) && !n.Cfg.NoSpinner)
		profile := profileLocal
		if isCluster(n) {
			profile = profileCluster
		}
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

// terminalReader lets a test stand in for an interactive stdin.
type terminalReader interface{ IsTerminal() bool }

// stdinIsTerminal reports whether r is an interactive terminal.
func stdinIsTerminal(r io.Reader) bool {
	if t, ok := r.(terminalReader); ok {
		return t.IsTerminal()
	}
	f, ok := r.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// confirmHard asks on the terminal before nuke --hard deletes data. With
// no terminal to ask on it refuses (usage error, exit 2); an answer other
// than "yes" aborts (exit 1). Either way nothing is stopped or removed.
func confirmHard(in io.Reader, prompt io.Writer, n *supervisor.Node) error {
	what := fmt.Sprintf("delete ALL DATA of node %s under %s (runs, tenants, audit log, credentials, keys)", n.Cfg.StackID, n.Cfg.Home)
	if n.B != nil {
		what += fmt.Sprintf(" and node B's home %s", n.B.Cfg.Home)
	}
	if !stdinIsTerminal(in) {
		return &ExitError{Code: 2, Err: fmt.Errorf("nuke --hard would %s; stdin is not a terminal to confirm on, so pass --yes to confirm (nothing was stopped or removed)", what)}
	}
	fmt.Fprintf(prompt, "nuke --hard will %s.\nType yes to continue: ", what)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read confirmation: %w", err)
	}
	if strings.TrimSpace(line) != "yes" {
		return &ExitError{Code: 1, Err: errors.New("nuke --hard aborted: not confirmed (nothing was stopped or removed)")}
	}
	return nil
}

// nuke stops the services of every node (node B first) and removes their
// state. For node B, --hard removes its whole home ($AGENTOS_HOME/node-b).
func nuke(a *supervisor.Node, p *Progress, rep *Report, hard bool) error {
	p.Phase("stop")
	nodes := a.All()
	total := 0
	for _, n := range nodes {
		total += len(n.Services)
	}
	stopped := 0
	for j := len(nodes) - 1; j >= 0; j-- {
		n := nodes[j]
		for i := len(n.Services) - 1; i >= 0; i-- {
			s := n.Services[i]
			was, err := n.Stop(s.Name, 15*time.Second)
			if err != nil {
				p.End(err, "")
				return &checkError{check: "stop " + n.Label(s.Name), service: s.Name, node: n, next: "agentos status", err: err}
			}
			action := "not running"
			if was {
				action = "stopped"
			}
			rep.Services = append(rep.Services, ServiceReport{Name: s.Name, Node: n.Name, Address: s.Addr, URL: s.URL, Action: action, LogFile: n.LogFile(s.Name)})
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
			targets = append(targets, n.RunDir(), n.LogDir(), n.Cfg.DataDir, n.Cfg.CredentialsFile(),
				filepath.Join(n.Cfg.Home, "secrets"), filepath.Join(n.Cfg.Home, "keys"))
			if isCluster(n) {
				targets = append(targets, supervisor.PostgresDir(n.Cfg.Home), supervisor.NATSDir(n.Cfg.Home), clusterStateFile(n.Cfg.Home), upstreamsFile(n.Cfg.Home))
			}
		default:
			targets = append(targets, n.RunDir(), n.LogDir())
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
