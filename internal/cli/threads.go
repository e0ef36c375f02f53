package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/store"
)

// newThreadsCmd is `agentos threads`: create, list, get, messages, run and
// delete the tenant's threads (the /v1/threads API).
func newThreadsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "threads", Short: "Create threads and hold conversations on them",
		Long: `threads works on the conversations of your tenant (the credentials' tenant,
or --tenant with a platform admin token). A run on a thread sees the
thread's earlier messages; when it ends, its turn is appended.`}
	cmd.AddCommand(newThreadsCreateCmd(), newThreadsListCmd(), newThreadsGetCmd(), newThreadsMessagesCmd(),
		newThreadsRunCmd(), newThreadsDeleteCmd())
	return cmd
}

// parseMetadata turns key=value flags into a map.
func parseMetadata(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("--metadata %q: want key=value", p)}
		}
		m[k] = v
	}
	return m, nil
}

func newThreadsCreateCmd() *cobra.Command {
	var meta []string
	var asJSON bool
	cmd := &cobra.Command{Use: "create", Short: "Create a thread", Args: cobra.NoArgs,
		Example: `  agentos threads create --metadata user=u_42 --metadata topic=billing`}
	a := bindAuthFlags(cmd)
	cmd.Flags().StringArrayVar(&meta, "metadata", nil, "key=value metadata (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"thread": {...}}`)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		m, err := parseMetadata(meta)
		if err != nil {
			return err
		}
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		t, err := c.CreateThread(cmd.Context(), m)
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"thread": t})
		}
		fmt.Fprintln(cmd.OutOrStdout(), t.ThreadID)
		return nil
	}
	return cmd
}

func newThreadsListCmd() *cobra.Command {
	var f apiclient.ThreadFilter
	var meta []string
	var asJSON bool
	cmd := &cobra.Command{Use: "list", Short: "List threads, newest first", Args: cobra.NoArgs,
		Example: `  agentos threads list
  agentos threads list --metadata user=u_42 --json`}
	a := bindAuthFlags(cmd)
	cmd.Flags().StringArrayVar(&meta, "metadata", nil, "only threads with this key=value metadata (repeatable, all must match)")
	cmd.Flags().IntVar(&f.Limit, "limit", 50, "threads per page (1-500)")
	cmd.Flags().StringVar(&f.Cursor, "cursor", "", "page cursor printed by the previous page")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"threads": [...], "next_cursor": ...}`)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if f.Limit < 1 || f.Limit > 500 {
			return &ExitError{Code: 2, Err: fmt.Errorf("--limit %d: want 1 to 500", f.Limit)}
		}
		var err error
		if f.Metadata, err = parseMetadata(meta); err != nil {
			return err
		}
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		ts, next, err := c.ListThreads(cmd.Context(), f)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			if ts == nil {
				ts = []store.Thread{}
			}
			return json.NewEncoder(out).Encode(map[string]any{"threads": ts, "next_cursor": nextCursor(next)})
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "THREAD\tCREATED\tACTIVE RUN\tMETADATA")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ThreadID, t.CreatedAt.Format(time.RFC3339), dash(t.ActiveRunID), metadataString(t.Metadata))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if next != "" {
			fmt.Fprintf(out, "more: agentos threads list --cursor %s\n", next)
		}
		return nil
	}
	return cmd
}

func newThreadsGetCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: "get <thread_id>", Short: "Show a thread", Args: cobra.ExactArgs(1)}
	a := bindAuthFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"thread": {...}}`)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		t, err := c.GetThread(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return json.NewEncoder(out).Encode(map[string]any{"thread": t})
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "thread\t%s\n", t.ThreadID)
		fmt.Fprintf(tw, "tenant\t%s\n", t.TenantID)
		fmt.Fprintf(tw, "created\t%s\n", t.CreatedAt.Format(time.RFC3339))
		fmt.Fprintf(tw, "updated\t%s\n", t.UpdatedAt.Format(time.RFC3339))
		fmt.Fprintf(tw, "active run\t%s\n", dash(t.ActiveRunID))
		fmt.Fprintf(tw, "metadata\t%s\n", metadataString(t.Metadata))
		return tw.Flush()
	}
	return cmd
}

func newThreadsMessagesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: "messages <thread_id>", Short: "Print a thread's conversation, oldest first", Args: cobra.ExactArgs(1)}
	a := bindAuthFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"messages": [...]} (every page)`)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		msgs, err := c.ThreadMessages(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			if msgs == nil {
				msgs = []store.ThreadMessage{}
			}
			return json.NewEncoder(out).Encode(map[string]any{"messages": msgs})
		}
		for _, m := range msgs {
			text := m.Content
			if len(m.ToolCalls) > 0 {
				text = strings.TrimSpace(text + " (tool calls: " + string(m.ToolCalls) + ")")
			}
			fmt.Fprintf(out, "%4d %-9s %s\n", m.Seq, m.Role, text)
		}
		return nil
	}
	return cmd
}

func newThreadsRunCmd() *cobra.Command {
	var asJSON bool
	var strategy, idem string
	var timeout time.Duration
	cmd := &cobra.Command{Use: `run <thread_id> <agent_id> "text"`, Short: "Create a run on a thread and show its events live",
		Long: `run creates a run of an agent on a thread (it sees the thread's earlier
messages) and follows its events to the end, as ` + "`agentos run`" + ` does. If the
thread has an active run, --strategy decides: reject (the default: exit 1
with a conflict), enqueue (start after it), interrupt (cancel it, keep its
partial turn) or rollback (cancel it, discard its turn).`,
		Args: cobra.ExactArgs(3)}
	a := bindAuthFlags(cmd)
	cmd.Flags().StringVar(&strategy, "strategy", "", "multitask_strategy: reject, enqueue, interrupt or rollback (default reject)")
	cmd.Flags().StringVar(&idem, "idempotency-key", "", "idempotency key for the run")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the run and each event as one JSON object per line")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up following the events after this long")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch strategy {
		case "", store.MultitaskReject, store.MultitaskEnqueue, store.MultitaskInterrupt, store.MultitaskRollback:
		default:
			return &ExitError{Code: 2, Err: fmt.Errorf("--strategy %q: want reject, enqueue, interrupt or rollback", strategy)}
		}
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		var extra map[string]any
		if idem != "" {
			extra = map[string]any{"idempotency_key": idem}
		}
		ctx := cmd.Context()
		out := cmd.OutOrStdout()
		run, err := c.CreateThreadRun(ctx, args[0], args[1], args[2], strategy, extra)
		if err != nil {
			return &ExitError{Code: 1, Err: fmt.Errorf("create run: %w", err)}
		}
		if asJSON {
			_ = json.NewEncoder(out).Encode(map[string]any{"run": run})
		} else {
			fmt.Fprintf(out, "run %s of %s on thread %s %s\n", run.RunID, run.AgentID, run.ThreadID, run.Status)
		}
		return followEvents(ctx, cmd, c, run.RunID, 0, timeout, asJSON)
	}
	return cmd
}

func newThreadsDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "delete <thread_id>", Short: "Delete a thread and its messages", Args: cobra.ExactArgs(1),
		Long: `delete removes a thread and its messages (an audit record keeps that it
happened). A thread with an active or enqueued run answers 409 conflict
(exit 1): cancel the run first.`}
	a := bindAuthFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		if err := c.DeleteThread(cmd.Context(), args[0]); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "thread %s deleted\n", args[0])
		return nil
	}
	return cmd
}

func metadataString(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// nextCursor is a page's next_cursor in JSON: null on the last page.
func nextCursor(next string) any {
	if next == "" {
		return nil
	}
	return next
}
