// Package cli is the agentos command line: serve, up, validate, status,
// logs, redeploy, nuke, and the day-two admin commands.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/version"
)

// ExitError carries a specific exit code out of a command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Main runs the CLI with args and returns the process exit code: 0 on
// success, 2 for a usage error, 1 (or an ExitError's code) for a failure.
func Main(args []string, stdout, stderr io.Writer) int {
	return MainIO(args, os.Stdin, stdout, stderr)
}

// MainIO is Main with stdin given (nuke --hard's confirmation reads it).
func MainIO(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			if ee.Err != nil {
				fmt.Fprintln(stderr, "error:", ee.Err)
			}
			return ee.Code
		}
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

// NewRootCmd builds the command tree.
func NewRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "agentos",
		Short:         "AgentOS: multi-tenant, federated agent platform",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(commands()...)
	usageErrorsExit2(root)
	return root
}

// usageErrorsExit2 is the one rule for exit codes: a usage error (unknown
// command or flag, bad flag value, wrong arguments) exits 2, a failure at
// run time exits 1 (or what an ExitError says). Cobra returns plain errors
// for usage problems, so each command's flag errors and argument checks
// are wrapped here, and a command group given an unknown subcommand says
// so instead of printing its help and exiting 0.
func usageErrorsExit2(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			// Args set, so cobra does not apply its legacy check (which
			// only the root gets, and as a plain error).
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(c *cobra.Command, args []string) error {
				if len(args) > 0 {
					return usageError(fmt.Errorf("unknown command %q for %q (see %s --help)", args[0], c.CommandPath(), c.CommandPath()))
				}
				return c.Help()
			}
		} else if args := c.Args; args != nil {
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return usageError(fmt.Errorf("%w (usage: %s)", err, c.UseLine()))
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// usageError marks err as a usage error (exit 2).
func usageError(err error) error {
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	return &ExitError{Code: 2, Err: err}
}

// commands lists the top-level commands. Each lives in its own file.
func commands() []*cobra.Command {
	return []*cobra.Command{
		newVersionCmd(),
		newServeCmd(),
		newUpCmd(),
		newValidateCmd(),
		newStatusCmd(),
		newLogsCmd(),
		newRedeployCmd(),
		newNukeCmd(),
		newBootstrapCmd(),
		newTenantsCmd(),
		newWorkersCmd(),
		newTokensCmd(),
		newAgentsCmd(),
		newRunCmd(),
		newRunsCmd(),
		newThreadsCmd(),
		newApproveCmd(),
		newSchedulesCmd(),
		newAuditCmd(),
		newCertsCmd(),
		newPeersCmd(),
		newTestAlertCmd(),
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "agentos %s (%s)\n", version.Version, version.SHA())
			return nil
		},
	}
}
