package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

func newNukeCmd() *cobra.Command {
	var yes, hard bool
	cmd := &cobra.Command{
		Use:   "nuke --yes-really [--hard]",
		Short: "Stop the node and remove its runtime state (--hard: also its data)",
		Long: `nuke stops every service and removes run/ (pid files) and logs/.
With --hard it also removes data/ (runs, tenants, audit), credentials.json,
secrets/ and keys/ (the node's signing key). Reports under reports/ are kept. It refuses to run without
--yes-really.`,
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
		n, err := nodeFromFlags(cf)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		p := NewProgress(out, isTerminal(os.Stdout))
		action := "nuke"
		rep := newReport(action, n, "local")
		err = nuke(n, p, rep, hard)
		return finishReport(out, n, rep, p, err)
	}
	return cmd
}

// nuke stops services and removes state.
func nuke(n *Node, p *Progress, rep *Report, hard bool) error {
	p.Phase("stop")
	stopped := 0
	for i := len(n.Services) - 1; i >= 0; i-- {
		s := n.Services[i]
		was, err := n.stop(s.Name, 15*time.Second)
		if err != nil {
			p.End(err, "")
			return &checkError{check: "stop " + s.Name, service: s.Name, next: "agentos status", err: err}
		}
		action := "not running"
		if was {
			action = "stopped"
		}
		rep.Services = append(rep.Services, ServiceReport{Name: s.Name, Address: s.Addr, URL: s.URL, Action: action, LogFile: n.logFile(s.Name)})
		stopped++
		p.Milestone("services stopped", stopped, len(n.Services))
	}
	p.Phase("remove")
	targets := []string{n.runDir(), n.logDir()}
	if hard {
		targets = append(targets, n.Cfg.DataDir, n.Cfg.CredentialsFile(), filepath.Join(n.Cfg.Home, "secrets"), filepath.Join(n.Cfg.Home, "keys"))
	}
	for i, t := range targets {
		if err := os.RemoveAll(t); err != nil && !errors.Is(err, os.ErrNotExist) {
			p.End(err, "")
			return &checkError{check: "remove " + t, next: "rm -rf " + t, err: err}
		}
		p.Milestone("removed", i+1, len(targets))
	}
	rep.Credentials.Exists = fileExists(n.Cfg.CredentialsFile())
	detail := "runtime state removed; data kept"
	if hard {
		detail = "runtime state and data removed; reports kept"
	}
	p.End(nil, detail)
	return nil
}
