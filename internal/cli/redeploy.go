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
(--profile local restarts node A only).

In the cluster profile redeploy is rolling: model-policy k then
orchestrator k for each replica k, then federation, one process at a time,
each back in the gateway's rotation before the next; PostgreSQL, NATS and the
gateway stay up, so requests through the gateway keep being served.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	bindUpFlags(cmd, &o, "", "local, federated or cluster (default: the cluster or node B the last up made, else local)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runUpCmd(cmd, cf, o, "redeploy")
	}
	return cmd
}
