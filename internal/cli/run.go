package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/store"
)

func newRunCmd() *cobra.Command {
	var asJSON, tokens bool
	var idem string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   `run <agent_id> "text"`,
		Short: "Create a run and show its events live",
		Long: `run creates a run of an agent with a text input and follows its event
stream (SSE) to the end, printing each event readably; --json prints one
JSON event envelope per line instead; --tokens asks for the model's output
as it is generated (stream.tokens: agentos.model.delta events). Exit 0 when the run completed, 1 when
it failed or was canceled.`,
		Args: cobra.ExactArgs(2),
	}
	a := bindAuthFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the run and each event as one JSON object per line")
	cmd.Flags().StringVar(&idem, "idempotency-key", "", "idempotency key for the run")
	cmd.Flags().BoolVar(&tokens, "tokens", false, "stream the model's output as it is generated (agentos.model.delta events)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up following the events after this long")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := a.client(asTenantAdmin)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		out := cmd.OutOrStdout()
		var extra map[string]any
		if idem != "" {
			extra = map[string]any{"idempotency_key": idem}
		}
		var opts []apiclient.RunOption
		if tokens {
			opts = append(opts, apiclient.WithTokenStream())
		}
		run, err := c.CreateRun(ctx, args[0], args[1], extra, opts...)
		if err != nil {
			return &ExitError{Code: 1, Err: fmt.Errorf("create run: %w", err)}
		}
		enc := json.NewEncoder(out)
		if asJSON {
			_ = enc.Encode(map[string]any{"run": run})
		} else {
			fmt.Fprintf(out, "run %s of %s (tenant %s) %s\n", run.RunID, run.AgentID, run.TenantID, run.Status)
		}
		return followEvents(ctx, cmd, c, run.RunID, 0, timeout, asJSON)
	}
	return cmd
}

// eventRenderer prints events for a person.
type eventRenderer struct {
	w     io.Writer
	start time.Time
}

func (r *eventRenderer) render(ev store.Event) {
	var pl map[string]any
	_ = json.Unmarshal(ev.Payload, &pl)
	s := func(k string) string { return str(pl[k]) }
	var line string
	switch ev.Type {
	case store.EventRunCreated:
		line = "run created (" + s("status") + ")"
	case store.EventStepStarted:
		line = fmt.Sprintf("step: %s %s", s("step_kind"), s("name"))
	case store.EventModelRequested:
		line = fmt.Sprintf("model %s requested (%s)", s("model_ref"), s("operation"))
	case store.EventModelCompleted:
		route, _ := pl["route"].(map[string]any)
		usage, _ := pl["usage"].(map[string]any)
		pol, _ := pl["policy_outcome"].(map[string]any)
		if st := s("status"); st != "ok" && st != "completed" {
			line = fmt.Sprintf("model %s %s %s", s("model_ref"), st, compactJSON(pl["error"]))
			break
		}
		// Model ids already name their backend ("builtin/echo-fast").
		served := str(route["model"])
		if b := str(route["backend"]); b != "" && !strings.HasPrefix(served, b+"/") {
			served = b + "/" + served
		}
		line = fmt.Sprintf("model %s → %s in %sms, %s tokens, policy %s",
			s("model_ref"), served, s("latency_ms"), str(usage["total_tokens"]), str(pol["decision"]))
	case store.EventModelDelta:
		line = fmt.Sprintf("model output #%s %q", s("index"), pl["text"])
	case store.EventToolCallRequested:
		line = fmt.Sprintf("tool %s ← %s", s("tool_id"), compactJSON(pl["input"]))
	case store.EventToolCallCompleted:
		line = fmt.Sprintf("tool %s %s in %sms → %s", s("tool_id"), s("status"), s("duration_ms"), compactJSON(pl["output"]))
		if e := pl["error"]; e != nil {
			line += " error " + compactJSON(e)
		}
	case store.EventRunCompleted:
		out, _ := pl["output"].(map[string]any)
		line = "completed: " + str(out["text"])
	case store.EventRunFailed:
		e, _ := pl["error"].(map[string]any)
		line = fmt.Sprintf("FAILED: %s: %s", str(e["code"]), str(e["message"]))
	case store.EventRunCanceled:
		line = "canceled: " + s("reason")
	case store.EventRunRequiresAction:
		ra, _ := pl["required_action"].(map[string]any)
		line = fmt.Sprintf("waiting for approval of %s %s (%s, deadline %s): agentos approve %s [--reject|--edit '{...}']",
			str(ra["tool_id"]), compactJSON(ra["arguments"]), str(ra["reason"]), str(ra["deadline"]), ev.RunID)
	case store.EventRunResumed:
		line = fmt.Sprintf("%s by %s", s("decision"), s("decided_by"))
		if a := pl["arguments"]; a != nil {
			line += " → " + compactJSON(a)
		}
	default:
		line = strings.TrimPrefix(ev.Type, "agentos.") + " " + compactJSON(pl)
	}
	fmt.Fprintf(r.w, "  %3d  +%-7s %s\n", ev.Sequence, fmtDuration(time.Since(r.start)), line)
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		return x
	case float64:
		return fmt.Sprintf("%g", x)
	default:
		return compactJSON(x)
	}
}

// compactJSON renders v in one line, cut at 160 characters.
func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}
