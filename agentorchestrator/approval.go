package agentorchestrator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
)

// Human approval of tool calls.
//
// A call needs approval when its tool is in the agent's require_approval,
// its tenant tool definition has requires_approval, or the agent's
// approval_rule (CEL over `tool` and `args`) is true for it. The executor
// then records the call as a tool step awaiting approval and stops the run
// in requires_action, together with a pending store.Approval and the
// removal of its queue entry, in one commit, and lets go of the run: it
// holds no lease, no executor goroutine and no max_concurrent_runs slot
// while it waits. A decision (POST /v1/runs/{run_id}:resume, or the expiry sweep
// once the deadline passes) is one compare-and-set commit from
// requires_action to queued that records the decision on the step and the
// approval and puts the run back in the queue: whichever replica leases it
// next carries on, and of two concurrent decisions exactly one wins.

// Decisions of POST /v1/runs/{run_id}:resume.
const (
	decisionApprove = "approve"
	decisionReject  = "reject"
	decisionEdit    = "edit"
)

// codeApprovalRejected is the error code of a tool result the model gets
// for a rejected (or expired) call.
const codeApprovalRejected = "approval_rejected"

// defaultApprovalTimeout applies when neither the node nor the agent sets one.
const defaultApprovalTimeout = 24 * time.Hour

// approvalSweepInterval is how often each replica looks for approvals past
// their deadline (one indexed query).
const approvalSweepInterval = time.Second

// systemPrincipal decides expired approvals.
const systemPrincipal = "system:approval_deadline"

// stepApproval is the approval state recorded in a tool step's input.
type stepApproval struct {
	Reason      string     `json:"reason"`
	RequestedAt time.Time  `json:"requested_at"`
	Deadline    time.Time  `json:"deadline"`
	Decision    string     `json:"decision,omitempty"` // approved, rejected, edited, expired
	DecidedBy   string     `json:"decided_by,omitempty"`
	DecidedAt   *time.Time `json:"decided_at,omitempty"`
	Comment     string     `json:"comment,omitempty"`
	// Original holds the model's arguments after an edit (the step's
	// Arguments are then the edited ones).
	Original json.RawMessage `json:"original_arguments,omitempty"`
}

// approvalEnv is the CEL environment of approval rules.
var approvalEnv = func() *cel.Env {
	env, err := cel.NewEnv(cel.Variable("tool", cel.StringType), cel.Variable("args", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		panic(err)
	}
	return env
}()

// approvalRules caches compiled rules by their text.
var approvalRules sync.Map // string → cel.Program

// compileApprovalRule compiles a rule; it must be boolean.
func compileApprovalRule(rule string) (cel.Program, error) {
	if p, ok := approvalRules.Load(rule); ok {
		return p.(cel.Program), nil
	}
	ast, iss := approvalEnv.Compile(rule)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("must be boolean, is %s", ast.OutputType())
	}
	prg, err := approvalEnv.Program(ast, cel.CostLimit(100000))
	if err != nil {
		return nil, err
	}
	approvalRules.Store(rule, prg)
	return prg, nil
}

// validateApproval checks an agent's approval settings (PUT agent).
func validateApproval(a *store.Agent) error {
	for i, id := range a.RequireApproval {
		if !slices.Contains(a.Tools, id) {
			return errs.Field(fmt.Sprintf("agent.require_approval[%d]", i), "%q is not one of the agent's tools", id)
		}
	}
	a.ApprovalRule = strings.TrimSpace(a.ApprovalRule)
	if a.ApprovalRule != "" {
		if _, err := compileApprovalRule(a.ApprovalRule); err != nil {
			return errs.Field("agent.approval_rule", "is not a valid CEL expression over tool and args: %v", err)
		}
	}
	if a.ApprovalTimeoutMs < 0 || a.ApprovalTimeoutMs > int64(30*24*time.Hour/time.Millisecond) {
		return errs.Field("agent.approval_timeout_ms", "must be between 0 (the node's AGENTOS_APPROVAL_TIMEOUT) and 30 days")
	}
	return nil
}

// approvalReason says why a call of toolID with args needs approval, ""
// when it does not. A rule that fails to evaluate asks for approval: a
// person decides rather than the tool running unchecked.
func (x *execution) approvalReason(ctx context.Context, toolID string, args json.RawMessage) string {
	if slices.Contains(x.agent.RequireApproval, toolID) {
		return "agent require_approval"
	}
	if _, builtin := x.s.cfg.Tools.Get(toolID); !builtin {
		if def, err := x.s.cfg.Store.GetTool(ctx, x.run.TenantID, toolID); err == nil && def.RequiresApproval {
			return "tool requires_approval"
		}
	}
	if x.agent.ApprovalRule == "" {
		return ""
	}
	prg, err := compileApprovalRule(x.agent.ApprovalRule)
	if err != nil {
		return "approval_rule does not compile: " + err.Error()
	}
	var m map[string]any
	if len(args) > 0 {
		if err := json.Unmarshal(args, &m); err != nil {
			return "approval_rule: arguments are not an object"
		}
	}
	if m == nil {
		m = map[string]any{}
	}
	out, _, err := prg.ContextEval(ctx, map[string]any{"tool": toolID, "args": m})
	if err != nil {
		return "approval_rule failed: " + err.Error()
	}
	if b, ok := out.Value().(bool); ok && b {
		return "agent approval_rule"
	}
	return ""
}

// approvalTimeout is how long a call of this run's agent waits for a decision.
func (x *execution) approvalTimeout() time.Duration {
	if x.agent.ApprovalTimeoutMs > 0 {
		return time.Duration(x.agent.ApprovalTimeoutMs) * time.Millisecond
	}
	return cmp.Or(x.s.cfg.Node.ApprovalTimeout, defaultApprovalTimeout)
}

// gate is what approvalGate says to do with a planned tool call.
type gate int

const (
	gateRun     gate = iota // call the tool (with the call's, possibly edited, arguments)
	gateWait                // stop the run in requires_action
	gateSettled             // rejected: its result is staged, go to the next call
)

// approvalGate decides a planned call's fate before it runs: a new call
// that needs approval is staged as awaiting approval (gateWait); a decided
// one runs with the decided arguments or is settled as rejected.
func (x *execution) approvalGate(ctx context.Context, modelStepID string, index int, call modelport.ToolCall, ts *store.Step) (modelport.ToolCall, gate) {
	toolID := cmp.Or(call.ToolID, call.Name)
	if ts != nil && ts.Status == store.StepStarted {
		// In flight before: callTool settles it, with the arguments it was
		// called with (an edit's, when a person edited them).
		var in toolStepInput
		if json.Unmarshal(ts.Input, &in) == nil && in.Approval != nil {
			call.Arguments = in.Arguments
		}
		return call, gateRun
	}
	if ts == nil {
		reason := x.approvalReason(ctx, toolID, call.Arguments)
		if reason == "" {
			return call, gateRun
		}
		x.requestApproval(modelStepID, index, call, toolID, reason)
		return call, gateWait
	}
	var in toolStepInput
	_ = json.Unmarshal(ts.Input, &in) // written by this package
	ap := in.Approval
	switch {
	case ap == nil || ap.Decision == "":
		return call, gateWait // still pending (never left requires_action)
	case ap.Decision == store.ApprovalApproved || ap.Decision == store.ApprovalEdited:
		call.Arguments = in.Arguments
		return call, gateRun
	}
	// Rejected or expired: not executed; the model is told why.
	st := *ts
	now := x.s.cfg.Now().UTC()
	st.Status, st.CompletedAt = store.StepFailed, &now
	msg := fmt.Sprintf("the call of %s was rejected by %s; it was not executed", toolID, ap.DecidedBy)
	if ap.Decision == store.ApprovalExpired {
		msg = fmt.Sprintf("the call of %s was not approved before its deadline %s; it was not executed", toolID, ap.Deadline.Format(time.RFC3339))
	}
	if ap.Comment != "" {
		msg += ": " + ap.Comment
	}
	result := toolStepOutput{Status: "error", Error: &store.ErrorBody{Code: codeApprovalRejected, Message: msg,
		Details: map[string]any{"decision": ap.Decision, "decided_by": ap.DecidedBy}}}
	st.Output, _ = json.Marshal(result)
	x.stage([]store.Step{st}, x.event(store.EventToolCallCompleted, st.StepID, map[string]any{
		"tool_call_id": st.ToolCallID, "tool_id": toolID, "status": "error", "output": json.RawMessage("null"),
		"duration_ms": 0, "error": result.Error, "retries": 0}))
	return call, gateSettled
}

// requestApproval stages the call as a tool step awaiting approval, the
// requires_action event and the pending approval; park commits them.
func (x *execution) requestApproval(modelStepID string, index int, call modelport.ToolCall, toolID, reason string) {
	now := x.s.cfg.Now().UTC()
	deadline := now.Add(x.approvalTimeout())
	args := call.Arguments
	if len(args) == 0 {
		args = json.RawMessage(`{}`)
	}
	ap := &stepApproval{Reason: reason, RequestedAt: now, Deadline: deadline}
	in, _ := json.Marshal(toolStepInput{ModelStepID: modelStepID, CallIndex: index, ModelCallID: call.ID, ToolID: toolID,
		Arguments: args, Approval: ap})
	st := store.Step{StepID: ids.New("stp_"), TenantID: x.run.TenantID, RunID: x.run.RunID, Index: len(x.steps),
		Kind: store.StepTool, Name: toolID, Status: store.StepAwaitingApproval, ToolCallID: ids.New("tcall_"), Input: in, StartedAt: now}
	x.stage([]store.Step{st},
		x.event(store.EventStepStarted, st.StepID, map[string]any{"step_kind": "tool", "name": toolID}),
		x.event(store.EventRunRequiresAction, st.StepID, map[string]any{"status": store.RunRequiresAction,
			"required_action": map[string]any{"type": "tool_approval", "tool_call_id": st.ToolCallID, "tool_id": toolID,
				"arguments": args, "step_id": st.StepID, "reason": reason, "deadline": deadline}}))
	x.pendingApproval = &store.Approval{ToolCallID: st.ToolCallID, StepID: st.StepID, ToolID: toolID, Arguments: args,
		Status: store.ApprovalPending, CreatedAt: now, Deadline: deadline}
}

// park commits the run as requires_action, removing its queue entry in
// the same commit (flush), and lets go of it. The entry goes with the
// commit rather than with the ack after it: a decision made in between
// then queues a fresh entry that the ack cannot remove.
func (x *execution) park(ctx context.Context) bool {
	x.run.Status = store.RunRequiresAction
	if !x.flush(ctx) {
		return x.stopped(ctx)
	}
	x.s.log.Debug("run requires action", "run_id", x.run.RunID, "tenant_id", x.run.TenantID)
	return true
}

// approvalWait is how long the run has waited for decisions: it does not
// count against the run's timeout_ms.
func approvalWait(steps []store.Step) time.Duration {
	var d time.Duration
	for _, st := range steps {
		if st.Kind != store.StepTool {
			continue
		}
		var in toolStepInput
		if json.Unmarshal(st.Input, &in) == nil && in.Approval != nil && in.Approval.DecidedAt != nil {
			d += in.Approval.DecidedAt.Sub(in.Approval.RequestedAt)
		}
	}
	return d
}

// resumeRequest is the body of POST /v1/runs/{run_id}:resume.
type resumeRequest struct {
	Decision  string          `json:"decision"`
	Arguments json.RawMessage `json:"arguments"`
	Comment   string          `json:"comment"`
}

// decision is a validated resume.
type decision struct {
	status    string // store.Approval* status
	arguments json.RawMessage
	comment   string
	by        string
}

func (s *Server) handleResumeRun(w http.ResponseWriter, r *http.Request, runID string) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsCreate)
	if err != nil {
		return err
	}
	raw, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	var req resumeRequest
	if err := httpx.DecodeBytes(raw, &req); err != nil {
		return err
	}
	d := decision{comment: req.Comment, by: ac.ActorID()}
	switch req.Decision {
	case decisionApprove:
		d.status = store.ApprovalApproved
	case decisionReject:
		d.status = store.ApprovalRejected
	case decisionEdit:
		d.status = store.ApprovalEdited
		if a := strings.TrimSpace(string(req.Arguments)); a == "" || a == "null" {
			return errs.Field("arguments", "is required with decision \"edit\"")
		} else if !strings.HasPrefix(a, "{") {
			return errs.Field("arguments", "must be an object")
		}
		d.arguments = req.Arguments
	case "":
		return errs.Field("decision", "is required (approve, reject or edit)")
	default:
		return errs.Field("decision", "must be approve, reject or edit, got %q", req.Decision)
	}
	if d.status != store.ApprovalEdited && len(req.Arguments) > 0 && string(req.Arguments) != "null" {
		return errs.Field("arguments", "is only accepted with decision \"edit\"")
	}
	if len(req.Comment) > 2000 {
		return errs.Field("comment", "must be at most 2000 bytes")
	}
	run, err := s.decide(r.Context(), ac.TenantID, runID, d)
	if err != nil {
		return err
	}
	details := map[string]any{"decision": d.status}
	if d.arguments != nil {
		details["arguments"] = d.arguments
	}
	s.audit(r, ac, ac.TenantID, "run.resume", "run/"+runID, details)
	httpx.JSON(w, r, http.StatusOK, map[string]any{"run": run})
	return nil
}

// decide records d on the run's pending approval and queues the run again,
// in one compare-and-set commit from requires_action: of concurrent
// decisions (people, replicas' expiry sweeps) exactly one wins; the others
// get conflict.
func (s *Server) decide(ctx context.Context, tenantID, runID string, d decision) (store.Run, error) {
	run, err := s.cfg.Store.GetRun(ctx, tenantID, runID)
	if errors.Is(err, errs.ErrNotFound) {
		return run, errs.E(errs.NotFound, "run %s not found", runID)
	} else if err != nil {
		return run, err
	}
	notWaiting := errs.E(errs.Conflict, "run %s is %s, not awaiting action", runID, run.Status).
		WithDetails(map[string]any{"status": run.Status})
	if run.Status != store.RunRequiresAction {
		return run, notWaiting
	}
	steps, err := s.cfg.Store.ListSteps(ctx, tenantID, runID)
	if err != nil {
		return run, err
	}
	i := slices.IndexFunc(steps, func(st store.Step) bool { return st.Status == store.StepAwaitingApproval && pendingIn(st) })
	if i < 0 {
		return run, notWaiting
	}
	st := steps[i]
	var in toolStepInput
	_ = json.Unmarshal(st.Input, &in) // written by the executor
	if d.status == store.ApprovalEdited {
		if err := s.validateEdit(ctx, tenantID, in.ToolID, d.arguments); err != nil {
			return run, err
		}
	}
	now := s.cfg.Now().UTC()
	ap := in.Approval
	original := in.Arguments
	ap.Decision, ap.DecidedBy, ap.DecidedAt, ap.Comment = d.status, d.by, &now, d.comment
	if d.status == store.ApprovalEdited {
		ap.Original, in.Arguments = in.Arguments, d.arguments
	}
	st.Input, _ = json.Marshal(in)
	payload := map[string]any{"status": store.RunQueued, "decision": d.status, "decided_by": d.by,
		"tool_call_id": st.ToolCallID, "tool_id": in.ToolID}
	if d.arguments != nil {
		payload["arguments"] = d.arguments
	}
	if d.comment != "" {
		payload["comment"] = d.comment
	}
	run.Status = store.RunQueued
	ev := s.newEvent(run, store.EventRunResumed, &st.StepID, httpx.TraceFrom(ctx), payload)
	// The attempt fence makes a decision read before the run went on (and
	// perhaps stopped again, at a later call) fail rather than overwrite
	// a step that has run since: every executor start increments it.
	_, err = s.commit(ctx, store.RunChange{TenantID: tenantID, RunID: runID,
		FromStatuses: []store.RunStatus{store.RunRequiresAction}, ExpectAttempt: run.Attempt, StatusOnly: true, Run: &run,
		Steps: []store.Step{st}, Events: []store.Event{ev},
		Approval: &store.Approval{ToolCallID: st.ToolCallID, StepID: st.StepID, ToolID: in.ToolID, Arguments: original,
			Status: d.status, CreatedAt: ap.RequestedAt, Deadline: ap.Deadline, DecidedBy: d.by, DecidedAt: &now,
			DecidedArguments: d.arguments},
		Enqueue: true, EnqueuePriority: priorities[run.RunOptions.Priority]})
	if errors.Is(err, errs.ErrConflict) {
		return run, errs.E(errs.Conflict, "run %s was decided or changed meanwhile; it is no longer awaiting action", runID)
	} else if err != nil {
		return run, err
	}
	s.wakeAll(ctx, tenantID)
	return run, nil
}

// pendingIn reports whether an awaiting step has no decision yet.
func pendingIn(st store.Step) bool {
	var in toolStepInput
	return json.Unmarshal(st.Input, &in) == nil && in.Approval != nil && in.Approval.Decision == ""
}

// validateEdit checks edited arguments against the tool's input schema,
// as the call itself would: a bad edit is refused now, naming the field,
// rather than failing the call later.
func (s *Server) validateEdit(ctx context.Context, tenantID, toolID string, args json.RawMessage) error {
	tool, ok, err := s.resolveTool(ctx, tenantID, toolID)
	if err != nil {
		return err
	}
	if !ok {
		return errs.E(errs.Conflict, "tool %s is no longer registered; approve or reject the call instead", toolID)
	}
	if err := tools.ValidateInput(tool.Spec().InputSchema, args); err != nil {
		e := errs.As(err)
		if e.Code != errs.InvalidRequest {
			return err
		}
		field, msg := "arguments", e.Message
		if f, ok := e.Details["field"].(string); ok && f != "" {
			field, msg = "arguments."+f, strings.TrimPrefix(msg, f+": ")
		}
		return errs.Field(field, "%s", msg)
	}
	return nil
}

// sweepApprovals rejects approvals past their deadline, every
// approvalSweepInterval until ctx ends. Every replica sweeps; decide's
// compare-and-set makes each expiry happen once.
func (s *Server) sweepApprovals(ctx context.Context) {
	t := time.NewTicker(approvalSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.expireApprovals(ctx)
	}
}

// expireApprovals rejects the approvals due now as expired.
func (s *Server) expireApprovals(ctx context.Context) {
	due, err := s.cfg.Store.ListDueApprovals(ctx, s.cfg.Now().UTC(), 100)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("list due approvals", "err", err)
		}
		return
	}
	for _, a := range due {
		_, err := s.decide(ctx, a.TenantID, a.RunID, decision{status: store.ApprovalExpired, by: systemPrincipal,
			comment: "approval deadline passed"})
		switch {
		case err == nil:
			_, _ = s.cfg.Audit.Record(ctx, store.AuditRecord{TenantID: a.TenantID, PrincipalID: systemPrincipal,
				Action: "run.resume", Target: "run/" + a.RunID, Outcome: "ok",
				Details: map[string]any{"decision": store.ApprovalExpired, "tool_call_id": a.ToolCallID}})
		case errors.Is(err, errs.ErrConflict):
			s.closeApproval(ctx, a)
		default:
			if ctx.Err() == nil {
				s.log.Warn("expire approval", "run_id", a.RunID, "err", err)
			}
		}
	}
}

// closeApproval marks a pending approval whose run no longer waits for it
// (canceled while waiting) as expired, so the sweep stops finding it. A
// run still waiting (another replica is deciding it right now) is left.
func (s *Server) closeApproval(ctx context.Context, a store.Approval) {
	run, err := s.cfg.Store.GetRun(ctx, a.TenantID, a.RunID)
	if err != nil || !run.Status.Terminal() {
		return
	}
	now := s.cfg.Now().UTC()
	a.Status, a.DecidedBy, a.DecidedAt = store.ApprovalExpired, systemPrincipal, &now
	if _, err := s.cfg.Store.ApplyRunChange(ctx, store.RunChange{TenantID: a.TenantID, RunID: a.RunID,
		FromStatuses: []store.RunStatus{run.Status}, Approval: &a}); err != nil && ctx.Err() == nil {
		s.log.Warn("close approval of a finished run", "run_id", a.RunID, "err", err)
	}
}
