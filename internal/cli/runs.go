package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/store"
)

// newRunsCmd is `agentos runs`: list, get, cancel and follow the tenant's
// runs (GET /v1/runs, GET /v1/runs/{id}, POST /v1/runs/{id}:cancel,
// GET /v1/runs/{id}/events).
func newRunsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "runs", Short: "List, inspect, cancel and follow runs",
		Long: `runs works on the runs of your tenant (the credentials' tenant, or --tenant
with a platform admin token): list, get, cancel, and events (the live
event stream, as ` + "`agentos run`" + ` shows it).`}
	cmd.AddCommand(newRunsListCmd(), newRunsGetCmd(), newRunsCancelCmd(), newRunsEventsCmd())
	return cmd
}

func newRunsListCmd() *cobra.Command {
	var f apiclient.RunFilter
	var asJSON bool
	cmd := &cobra.Command{Use: "list", Short: "List runs, newest first", Args: cobra.NoArgs,
		Example: `  agentos runs list
  agentos runs list --status failed --limit 10
  agentos runs list --agent agt_sample_echo_v1 --json`}
	a := bindAuthFlags(cmd)
	cmd.Flags().StringVar(&f.AgentID, "agent", "", "only runs of this agent")
	cmd.Flags().StringVar(&f.Status, "status", "", "only runs in this status: queued, running, requires_action, completed, failed or canceled")
	cmd.Flags().IntVar(&f.Limit, "limit", 50, "runs per page (1-500)")
	cmd.Flags().StringVar(&f.Cursor, "cursor", "", "page cursor printed by the previous page")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"runs": [...], "next_cursor": ...}`)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if f.Limit < 1 || f.Limit > 500 {
			return &ExitError{Code: 2, Err: fmt.Errorf("--limit %d: want 1 to 500", f.Limit)}
		}
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		runs, next, err := c.ListRuns(cmd.Context(), f)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			var nc any
			if next != "" {
				nc = next
			}
			if runs == nil {
				runs = []store.Run{}
			}
			return json.NewEncoder(out).Encode(map[string]any{"runs": runs, "next_cursor": nc})
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tAGENT\tSTATUS\tCREATED\tSTEPS\tMODEL CALLS\tTOOL CALLS")
		for _, r := range runs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", r.RunID, r.AgentID, r.Status, r.CreatedAt.Format(time.RFC3339),
				r.Summary.StepsTotal, r.Summary.ModelCallsTotal, r.Summary.ToolCallsTotal)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if next != "" {
			fmt.Fprintf(out, "more: agentos runs list --cursor %s\n", next)
		}
		return nil
	}
	return cmd
}

func newRunsGetCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: "get <run_id>", Short: "Show a run", Args: cobra.ExactArgs(1)}
	a := bindAuthFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"run": {...}}`)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		run, err := c.GetRun(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return json.NewEncoder(out).Encode(map[string]any{"run": run})
		}
		printRun(cmd, run)
		if run.Status == store.RunRequiresAction {
			if ra, ok, err := c.PendingAction(cmd.Context(), run.RunID); err == nil && ok {
				fmt.Fprintf(out, "waiting for approval of %s %s (%s), deadline %s:\n  agentos approve %s [--reject|--edit '{...}']\n",
					ra.ToolID, string(ra.Arguments), ra.Reason, ra.Deadline.Format(time.RFC3339), run.RunID)
			}
		}
		return nil
	}
	return cmd
}

// printRun prints a run for a person.
func printRun(cmd *cobra.Command, r store.Run) {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	ts := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Format(time.RFC3339)
	}
	fmt.Fprintf(tw, "run\t%s\n", r.RunID)
	fmt.Fprintf(tw, "agent\t%s\n", r.AgentID)
	fmt.Fprintf(tw, "tenant\t%s\n", r.TenantID)
	fmt.Fprintf(tw, "status\t%s\n", r.Status)
	fmt.Fprintf(tw, "created\t%s\n", r.CreatedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "started\t%s\n", ts(r.StartedAt))
	fmt.Fprintf(tw, "completed\t%s\n", ts(r.CompletedAt))
	fmt.Fprintf(tw, "input\t%s\n", r.Input.Text)
	fmt.Fprintf(tw, "summary\t%d steps, %d model calls, %d tool calls\n", r.Summary.StepsTotal, r.Summary.ModelCallsTotal, r.Summary.ToolCallsTotal)
	if r.Output != nil {
		fmt.Fprintf(tw, "output\t%s\n", r.Output.Text)
	}
	if r.Error != nil {
		fmt.Fprintf(tw, "error\t%s: %s\n", r.Error.Code, r.Error.Message)
	}
	_ = tw.Flush()
}

func newRunsCancelCmd() *cobra.Command {
	var asJSON bool
	var reason string
	cmd := &cobra.Command{Use: "cancel <run_id>", Short: "Cancel a queued or running run", Args: cobra.ExactArgs(1),
		Long: `cancel asks the orchestrator to cancel a run. A run that already ended
answers 409 conflict (exit 1).`}
	a := bindAuthFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "reason recorded on the run's canceled event")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"run": {...}}`)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		run, err := c.CancelRun(cmd.Context(), args[0], reason)
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"run": run})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "run %s %s\n", run.RunID, run.Status)
		return nil
	}
	return cmd
}

func newRunsEventsCmd() *cobra.Command {
	var asJSON bool
	var after int64
	var timeout time.Duration
	cmd := &cobra.Command{Use: "events <run_id>", Short: "Follow a run's events live (SSE)", Args: cobra.ExactArgs(1),
		Long: `events follows a run's event stream (SSE) from the start, or after
--after, to its terminal event, printing each event readably; --json prints
one JSON event envelope per line. For a run that already ended it prints
its stored events and returns. Exit 0 when the run completed, 1 when it
failed or was canceled.`}
	a := bindAuthFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each event as one JSON object per line")
	cmd.Flags().Int64Var(&after, "after", 0, "start after this event sequence number")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up following the events after this long")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if after < 0 {
			return &ExitError{Code: 2, Err: fmt.Errorf("--after %d: want 0 or more", after)}
		}
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		return followEvents(cmd.Context(), cmd, c, args[0], after, timeout, asJSON)
	}
	return cmd
}

// followEvents streams a run's events to cmd's output until the terminal
// event; a run that did not complete is exit 1.
func followEvents(ctx context.Context, cmd *cobra.Command, c *apiclient.Client, runID string, after int64, timeout time.Duration, asJSON bool) error {
	out := cmd.OutOrStdout()
	enc := json.NewEncoder(out)
	var last store.Event
	r := &eventRenderer{w: out, start: time.Now()}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := c.StreamEvents(tctx, runID, after, func(ev store.Event) error {
		last = ev
		if asJSON {
			return enc.Encode(map[string]any{"event": ev})
		}
		r.render(ev)
		return nil
	})
	if err != nil {
		return &ExitError{Code: 1, Err: fmt.Errorf("follow events of %s: %w", runID, err)}
	}
	if last.Type != store.EventRunCompleted {
		return &ExitError{Code: 1, Err: fmt.Errorf("run %s ended with %s", runID, firstNonEmpty(last.Type, "no terminal event"))}
	}
	return nil
}
