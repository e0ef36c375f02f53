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

// Main runs the CLI with args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRootCmd()
	root.SetArgs(args)
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
	return root
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
		newTokensCmd(),
		newAgentsCmd(),
		newRunCmd(),
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
