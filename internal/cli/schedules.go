package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/store"
)

// newSchedulesCmd is `agentos schedules`: create, list, get, pause, resume
// and delete the tenant's schedules (/v1/schedules).
func newSchedulesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "schedules", Short: "Create and manage schedules that start runs",
		Long: `schedules works on the schedules of your tenant: each creates a run of an
agent at every tick of a cron expression (5 fields, or 6 with seconds first)
or of a fixed interval (--every 1m), in a time zone.`}
	cmd.AddCommand(newSchedulesCreateCmd(), newSchedulesListCmd(), newScheduleOneCmd("get", "Show a schedule"),
		newScheduleOneCmd("pause", "Pause a schedule (no runs until resumed)"),
		newScheduleOneCmd("resume", "Resume a paused schedule from its next tick"),
		newScheduleOneCmd("delete", "Delete a schedule"))
	return cmd
}

func newSchedulesCreateCmd() *cobra.Command {
	var req apiclient.ScheduleRequest
	var input string
	var asJSON bool
	cmd := &cobra.Command{Use: "create", Short: "Create a schedule", Args: cobra.NoArgs,
		Example: `  agentos schedules create --agent agt_sample_echo_v1 --every 1h --input "hourly report"
  agentos schedules create --agent agt_sample_echo_v1 --cron "0 9 * * 1-5" --timezone Europe/Paris --input "good morning"
  agentos schedules create --agent agt_sample_echo_v1 --cron "*/30 * * * * *" --input tick --misfire catch_up --catch-up-max 5`}
	a := bindAuthFlags(cmd)
	cmd.Flags().StringVar(&req.AgentID, "agent", "", "agent each tick runs (required)")
	cmd.Flags().StringVar(&req.Cron, "cron", "", "cron expression: 5 fields, or 6 with seconds first")
	cmd.Flags().StringVar(&req.Every, "every", "", "fixed interval instead of --cron, such as 30s or 1h (at least 1s)")
	cmd.Flags().StringVar(&req.Timezone, "timezone", "", "IANA time zone of --cron (default UTC)")
	cmd.Flags().StringVar(&input, "input", "", "the runs' input text (required)")
	cmd.Flags().StringVar(&req.ThreadID, "thread", "", "thread the runs belong to")
	cmd.Flags().StringVar(&req.MisfirePolicy, "misfire", "", "what to do with ticks missed while no node ran: skip (default) or catch_up")
	cmd.Flags().IntVar(&req.CatchUpMax, "catch-up-max", 0, "with --misfire catch_up: how many missed ticks to fire, latest first (1-100, default 1)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"schedule": {...}}`)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if req.AgentID == "" || input == "" {
			return &ExitError{Code: 2, Err: fmt.Errorf("--agent and --input are required")}
		}
		req.Input = input
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		sc, err := c.CreateSchedule(cmd.Context(), req)
		if err != nil {
			return err
		}
		return printSchedule(cmd, sc, asJSON)
	}
	return cmd
}

func newSchedulesListCmd() *cobra.Command {
	var cursor string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{Use: "list", Short: "List schedules by id", Args: cobra.NoArgs}
	a := bindAuthFlags(cmd)
	cmd.Flags().IntVar(&limit, "limit", 50, "schedules per page (1-500)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "page cursor printed by the previous page")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"schedules": [...], "next_cursor": ...}`)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if limit < 1 || limit > 500 {
			return &ExitError{Code: 2, Err: fmt.Errorf("--limit %d: want 1 to 500", limit)}
		}
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		list, next, err := c.ListSchedules(cmd.Context(), cursor, limit)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			var nc any
			if next != "" {
				nc = next
			}
			if list == nil {
				list = []store.Schedule{}
			}
			return json.NewEncoder(out).Encode(map[string]any{"schedules": list, "next_cursor": nc})
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SCHEDULE\tAGENT\tSPEC\tSTATUS\tNEXT RUN\tLAST RUN")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ScheduleID, s.AgentID, scheduleSpec(s), s.Status,
				timeOrDash(s.NextRunAt), dashIfEmpty(s.LastRunID))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if next != "" {
			fmt.Fprintf(out, "more: agentos schedules list --cursor %s\n", next)
		}
		return nil
	}
	return cmd
}

// newScheduleOneCmd is get, pause, resume or delete of one schedule.
func newScheduleOneCmd(verb, short string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: verb + " <schedule_id>", Short: short, Args: cobra.ExactArgs(1)}
	a := bindAuthFlags(cmd)
	if verb != "delete" {
		cmd.Flags().BoolVar(&asJSON, "json", false, `print {"schedule": {...}}`)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		ctx, id := cmd.Context(), args[0]
		var sc store.Schedule
		switch verb {
		case "get":
			sc, err = c.GetSchedule(ctx, id)
		case "pause":
			sc, err = c.PauseSchedule(ctx, id)
		case "resume":
			sc, err = c.ResumeSchedule(ctx, id)
		default:
			if err := c.DeleteSchedule(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", id)
			return nil
		}
		if err != nil {
			return err
		}
		return printSchedule(cmd, sc, asJSON)
	}
	return cmd
}

func printSchedule(cmd *cobra.Command, s store.Schedule, asJSON bool) error {
	out := cmd.OutOrStdout()
	if asJSON {
		return json.NewEncoder(out).Encode(map[string]any{"schedule": s})
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "schedule\t%s\n", s.ScheduleID)
	fmt.Fprintf(tw, "agent\t%s\n", s.AgentID)
	fmt.Fprintf(tw, "spec\t%s (%s)\n", scheduleSpec(s), s.Timezone)
	fmt.Fprintf(tw, "status\t%s\n", s.Status)
	fmt.Fprintf(tw, "misfire\t%s\n", s.MisfirePolicy)
	fmt.Fprintf(tw, "next run\t%s\n", timeOrDash(s.NextRunAt))
	fmt.Fprintf(tw, "last tick\t%s\n", timeOrDash(s.LastTickAt))
	fmt.Fprintf(tw, "last run\t%s\n", dashIfEmpty(s.LastRunID))
	if s.LastError != "" {
		fmt.Fprintf(tw, "last error\t%s\n", s.LastError)
	}
	return tw.Flush()
}

func scheduleSpec(s store.Schedule) string {
	if s.Every != "" {
		return "every " + s.Every
	}
	return "cron " + s.Cron
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
