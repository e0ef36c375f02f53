package cli

import "github.com/spf13/cobra"

func newRedeployCmd() *cobra.Command {
	var o upOptions
	cmd := &cobra.Command{
		Use:   "redeploy",
		Short: "Restart every service, keeping all data, then validate",
		Long: `redeploy stops every service of the node and starts them again with the
current binary and configuration, then runs the seed, wire and validate
phases. Data, credentials and reports are kept; running it twice is safe.
When node B of the federated profile exists, both nodes are redeployed
(--profile local restarts node A only).`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	bindUpFlags(cmd, &o, "", "local or federated (default: federated when node B exists)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runUpCmd(cmd, cf, o, "redeploy")
	}
	return cmd
}
