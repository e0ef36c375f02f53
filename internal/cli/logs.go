package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/supervisor"
)

func newLogsCmd() *cobra.Command {
	var follow bool
	var tail int
	var nodeName string
	cmd := &cobra.Command{
		Use:   "logs <service>",
		Short: "Print a service's log (orchestrator, model-policy, federation)",
		Long: `logs prints the last lines of a service's log under $AGENTOS_HOME/logs; with
--node b, node B's of the federated profile ($AGENTOS_HOME/node-b/logs). In
the cluster profile every process has its log: orchestrator, orchestrator-2,
..., model-policy, model-policy-2, ..., federation, gateway, postgres and nats
(nats-2, nats-3 with --nats-servers 3).`,
		Example: `  agentos logs orchestrator
  agentos logs model-policy -f
  agentos logs federation --node b --tail 20
  agentos logs orchestrator-2 --tail 50   # cluster profile`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("name one service: orchestrator, model-policy or federation (e.g. agentos logs orchestrator)")
			}
			return nil
		},
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().StringVar(&nodeName, "node", "a", "a, or b for node B of the federated profile")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVar(&tail, "tail", 100, "number of last lines to print (0: all)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		n, err := nodeFromFlags(cf)
		if err != nil {
			return err
		}
		if _, err := loadCluster(n); err != nil {
			return err
		}
		switch nodeName {
		case "a", "":
		case "b":
			ok, err := loadNodeB(n)
			if err != nil {
				return err
			}
			if !ok {
				return &ExitError{Code: 2, Err: fmt.Errorf("no node B under %s (it is made by `agentos up --profile federated`)", n.Cfg.Home)}
			}
			n = n.B
		default:
			return &ExitError{Code: 2, Err: fmt.Errorf("--node %q: want a or b", nodeName)}
		}
		name := args[0]
		if _, ok := n.Service(name); !ok {
			var names []string
			for _, s := range n.Services {
				names = append(names, s.Name)
			}
			return &ExitError{Code: 2, Err: fmt.Errorf("unknown service %q (want one of %s)", name, strings.Join(names, ", "))}
		}
		return printLog(cmd.Context(), cmd.OutOrStdout(), n.LogFile(name), tail, follow, 250*time.Millisecond)
	}
	return cmd
}

// printLog prints the last tail lines of path (all if tail <= 0) and, with
// follow, new lines as they are appended (a truncated file is reread from
// the start) until ctx ends.
func printLog(ctx context.Context, out io.Writer, path string, tail int, follow bool, poll time.Duration) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &ExitError{Code: 1, Err: fmt.Errorf("no log at %s yet (has `agentos up` run?)", path)}
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if tail > 0 {
		for _, l := range supervisor.TailLines(path, tail) {
			fmt.Fprintln(out, l)
		}
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			return err
		}
	} else if _, err := io.Copy(out, f); err != nil {
		return err
	}
	if !follow {
		return nil
	}
	pos, _ := f.Seek(0, io.SeekCurrent)
	buf := make([]byte, 32<<10)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
		if st, err := os.Stat(path); err == nil && st.Size() < pos {
			if nf, err := os.Open(path); err == nil {
				f.Close()
				f, pos = nf, 0
			}
		}
		for {
			k, err := f.Read(buf)
			if k > 0 {
				_, _ = out.Write(buf[:k])
				pos += int64(k)
			}
			if err != nil || k == 0 {
				break
			}
		}
	}
}
