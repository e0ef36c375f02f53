package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/apiclient"
)

// newApproveCmd is `agentos approve <run_id>`: decide the tool call a
// requires_action run waits on (POST /v1/runs/{run_id}:resume).
func newApproveCmd() *cobra.Command {
	var reject, asJSON bool
	var edit, comment string
	cmd := &cobra.Command{Use: "approve <run_id>", Short: "Approve, reject or edit the tool call a run waits on",
		Args: cobra.ExactArgs(1),
		Long: `approve decides the tool call a run in status requires_action waits on (an
agent's require_approval, a tool's requires_approval or the agent's
approval_rule asked for a person). Without flags the call runs as the model
planned it; --reject does not run it and tells the model; --edit runs it with
the given JSON arguments instead. The run then carries on. A run not
awaiting action answers 409 conflict (exit 1).`,
		Example: `  agentos runs list --status requires_action
  agentos approve run_01J...
  agentos approve run_01J... --reject --comment "not on a Friday"
  agentos approve run_01J... --edit '{"text":"hello, edited"}'`}
	a := bindAuthFlags(cmd)
	cmd.Flags().BoolVar(&reject, "reject", false, "reject the call: it is not executed and the model is told")
	cmd.Flags().StringVar(&edit, "edit", "", "run the call with these JSON arguments (an object) instead")
	cmd.Flags().StringVar(&comment, "comment", "", "a note recorded with the decision (the model sees it on a reject)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"run": {...}}`)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		r := apiclient.Resume{Decision: apiclient.DecisionApprove, Comment: comment}
		switch {
		case reject && edit != "":
			return &ExitError{Code: 2, Err: errors.New("--reject and --edit exclude each other")}
		case reject:
			r.Decision = apiclient.DecisionReject
		case edit != "":
			if !json.Valid([]byte(edit)) || !strings.HasPrefix(strings.TrimSpace(edit), "{") {
				return &ExitError{Code: 2, Err: fmt.Errorf("--edit %q: want a JSON object, e.g. '{\"text\":\"hi\"}'", edit)}
			}
			r.Decision, r.Arguments = apiclient.DecisionEdit, json.RawMessage(edit)
		}
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		pending, waiting, err := c.PendingAction(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		run, err := c.ResumeRun(cmd.Context(), args[0], r)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return json.NewEncoder(out).Encode(map[string]any{"run": run})
		}
		if waiting {
			fmt.Fprintf(out, "tool call %s: %s %s (asked: %s; deadline %s)\n", pending.ToolCallID, pending.ToolID,
				string(pending.Arguments), pending.Reason, pending.Deadline.Format(time.RFC3339))
		}
		done := map[string]string{apiclient.DecisionApprove: "approved", apiclient.DecisionReject: "rejected", apiclient.DecisionEdit: "edited"}
		fmt.Fprintf(out, "%s: run %s is %s again\n", done[r.Decision], run.RunID, run.Status)
		return nil
	}
	return cmd
}
