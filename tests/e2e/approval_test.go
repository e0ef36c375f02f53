package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestHumanApproval drives human approval with real processes: runs of an
// agent whose tool.echo calls need approval stop in requires_action; the
// orchestrator is killed with SIGKILL while four of them wait and
// restarted; then `agentos approve` approves one (the tool runs), rejects
// one (the tool does not run, the model is told), the typed client edits
// one (the tool runs with the edited arguments) and approves the last. A
// fifth run of an agent without a deadline override is rejected by the
// node's short AGENTOS_APPROVAL_TIMEOUT.
func TestHumanApproval(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	t.Parallel()
	n := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_APPROVAL_TIMEOUT=2s"}})
	ctx := t.Context()
	creds := n.Credentials()
	admin := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: creds.PlatformAdmin.Token, TenantID: "tnt_demo"}
	user := &apiclient.Client{BaseURL: n.URL("orchestrator"), TenantID: "tnt_demo"}
	gated := map[string]any{"name": "gated echo", "model_ref": "tier:fast", "instructions": "Echo with tool.echo.",
		"tools": []string{"tool.echo"}, "require_approval": []string{"tool.echo"}, "approval_timeout_ms": 600000}
	_, err := admin.PutAgent(ctx, "agt_gated", gated)
	require.NoError(t, err)
	short := map[string]any{"name": "gated echo, node deadline", "model_ref": "tier:fast", "tools": []string{"tool.echo"},
		"require_approval": []string{"tool.echo"}}
	_, err = admin.PutAgent(ctx, "agt_gated_short", short)
	require.NoError(t, err)

	waitStatus := func(runID string, want store.RunStatus) store.Run {
		t.Helper()
		var run store.Run
		require.Eventually(t, func() bool {
			run, err = user.GetRun(ctx, runID)
			require.NoError(t, err)
			return run.Status == want
		}, time.Minute, 20*time.Millisecond, "run %s never reached %s", runID, want)
		return run
	}
	create := func(agent, text string) string {
		t.Helper()
		run, err := user.CreateRun(ctx, agent, text, nil)
		require.NoError(t, err)
		return run.RunID
	}
	payload := func(evs []store.Event, typ string) (map[string]any, bool) {
		for _, e := range evs {
			if e.Type == typ {
				var p map[string]any
				require.NoError(t, json.Unmarshal(e.Payload, &p))
				return p, true
			}
		}
		return nil, false
	}
	cli := func(args ...string) (string, int) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		out, err := n.Run(cctx, args...)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, ee.ExitCode()
		}
		require.NoError(t, err, out)
		return out, 0
	}

	// The expiring run: the node's 2 s deadline, noticed by the sweep.
	expiring := create("agt_gated_short", "nobody answers")
	runs := map[string]string{}
	for _, d := range []string{"approve", "reject", "edit", "crash"} {
		runs[d] = create("agt_gated", "please "+d)
	}
	for d, id := range runs {
		waitStatus(id, store.RunRequiresAction)
		ra, ok, err := user.PendingAction(ctx, id)
		require.NoError(t, err)
		require.True(t, ok, d)
		require.Equal(t, "tool.echo", ra.ToolID)
		require.JSONEq(t, `{"text":"please `+d+`"}`, string(ra.Arguments))
		require.NotEmpty(t, ra.ToolCallID)
		require.True(t, ra.Deadline.After(time.Now().Add(5*time.Minute)), "the agent's 10-minute override applies")
	}
	out, code := cli("runs", "list", "--status", "requires_action")
	require.Equal(t, 0, code, out)
	for _, id := range runs {
		require.Contains(t, out, id)
	}
	out, code = cli("runs", "get", runs["approve"])
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "requires_action")
	require.Contains(t, out, "agentos approve "+runs["approve"])

	// Expiry: rejected by the system, the model told, the tool never run.
	run := waitStatus(expiring, store.RunCompleted)
	evs, err := user.ListEvents(ctx, expiring)
	require.NoError(t, err)
	resumed, ok := payload(evs, store.EventRunResumed)
	require.True(t, ok)
	require.Equal(t, "expired", resumed["decision"])
	_, requested := payload(evs, store.EventToolCallRequested)
	require.False(t, requested, "an expired call is not executed")
	done, _ := payload(evs, store.EventToolCallCompleted)
	require.Equal(t, "approval_rejected", done["error"].(map[string]any)["code"])
	require.Contains(t, run.Output.Text, "deadline")

	// Pending approvals survive kill -9: state is in the store.
	n.Kill("orchestrator")
	n.StartService("orchestrator")
	for _, id := range runs {
		run, err := user.GetRun(ctx, id)
		require.NoError(t, err)
		require.Equal(t, store.RunRequiresAction, run.Status)
	}

	// Approve with the CLI: the tool runs with the model's arguments.
	out, code = cli("approve", runs["approve"])
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "approved")
	run = waitStatus(runs["approve"], store.RunCompleted)
	evs, err = user.ListEvents(ctx, runs["approve"])
	require.NoError(t, err)
	req, ok := payload(evs, store.EventToolCallRequested)
	require.True(t, ok)
	require.Equal(t, map[string]any{"text": "please approve"}, req["input"])
	done, _ = payload(evs, store.EventToolCallCompleted)
	require.Equal(t, "ok", done["status"])
	resumed, _ = payload(evs, store.EventRunResumed)
	require.Equal(t, "approved", resumed["decision"])
	require.Equal(t, creds.TenantAdmin.PrincipalID, resumed["decided_by"], "the CLI decides as the home's tenant admin")
	require.Contains(t, run.Output.Text, "please approve")

	// A second decision conflicts.
	out, code = cli("approve", runs["approve"])
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "conflict")

	// Reject with the CLI: not executed, the model is told.
	out, code = cli("approve", runs["reject"], "--reject", "--comment", "not this one")
	require.Equal(t, 0, code, out)
	run = waitStatus(runs["reject"], store.RunCompleted)
	evs, err = user.ListEvents(ctx, runs["reject"])
	require.NoError(t, err)
	_, requested = payload(evs, store.EventToolCallRequested)
	require.False(t, requested, "a rejected call is not executed")
	done, _ = payload(evs, store.EventToolCallCompleted)
	require.Equal(t, "error", done["status"])
	require.Equal(t, "approval_rejected", done["error"].(map[string]any)["code"])
	require.Contains(t, run.Output.Text, "not this one", "the model saw the rejection")

	// Edit with the typed client: bad arguments are refused naming the
	// field, then the tool runs with the edited arguments.
	_, err = user.ResumeRun(ctx, runs["edit"], apiclient.Resume{Decision: "edit", Arguments: json.RawMessage(`{"text":42}`)})
	require.ErrorIs(t, err, errs.ErrInvalid)
	require.Equal(t, "arguments.text", errs.As(err).Details["field"])
	_, err = user.ResumeRun(ctx, runs["edit"], apiclient.Resume{Decision: "later"})
	require.ErrorIs(t, err, errs.ErrInvalid)
	require.Equal(t, "decision", errs.As(err).Details["field"])
	_, err = user.ResumeRun(ctx, runs["edit"], apiclient.Resume{Decision: "edit", Arguments: json.RawMessage(`{"text":"edited by a person"}`)})
	require.NoError(t, err)
	run = waitStatus(runs["edit"], store.RunCompleted)
	evs, err = user.ListEvents(ctx, runs["edit"])
	require.NoError(t, err)
	req, _ = payload(evs, store.EventToolCallRequested)
	require.Equal(t, map[string]any{"text": "edited by a person"}, req["input"])
	done, _ = payload(evs, store.EventToolCallCompleted)
	require.Equal(t, "ok", done["status"])
	require.Contains(t, run.Output.Text, "edited by a person")
	require.NotContains(t, run.Output.Text, "please edit")

	// The run that waited through the crash completes once approved.
	decided := time.Now()
	_, err = user.ResumeRun(ctx, runs["crash"], apiclient.Resume{Decision: "approve"})
	require.NoError(t, err)
	run = waitStatus(runs["crash"], store.RunCompleted)
	require.Contains(t, run.Output.Text, "please crash")
	// Reported, not asserted (no timing assertions in tests).
	t.Logf("approve → completed (re-queue, lease, tool call, model call) observed within %s (20 ms polling)", time.Since(decided))

	// Every decision is audited with its principal.
	var audit struct {
		Records []store.AuditRecord `json:"records"`
	}
	require.NoError(t, admin.Do(ctx, "GET", admin.BaseURL, "/v1/admin/audit?limit=1000", nil, &audit))
	deciders := map[string]int{}
	for _, r := range audit.Records {
		if r.Action == "run.resume" {
			deciders[r.PrincipalID]++
		}
	}
	require.Equal(t, map[string]int{creds.TenantAdmin.PrincipalID: 2, "usr_anonymous": 2, "system:approval_deadline": 1}, deciders)
}
