package agentorchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nexixai/agentos/internal/dispatch"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tenancy"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tracing"
)

// stage records step upserts and events to be committed by the next flush,
// keeping x.steps current.
func (x *execution) stage(steps []store.Step, evs ...store.Event) {
	for _, st := range steps {
		if i := slices.IndexFunc(x.steps, func(o store.Step) bool { return o.StepID == st.StepID }); i >= 0 {
			x.steps[i] = st
		} else {
			x.steps = append(x.steps, st)
		}
		if i := slices.IndexFunc(x.pendingSteps, func(o store.Step) bool { return o.StepID == st.StepID }); i >= 0 {
			x.pendingSteps[i] = st
		} else {
			x.pendingSteps = append(x.pendingSteps, st)
		}
	}
	x.pendingEvents = append(x.pendingEvents, evs...)
	x.dirty = true
}

// flush commits what was staged, together with the run's current fields,
// as one compare-and-set change (so a concurrent cancel, or another
// executor that resumed the run, wins). It is called before every external
// call (model, tool) and with the terminal state: whatever a resumed run
// finds in the store is everything that happened before any side effect,
// at one commit per side effect instead of one per event.
func (x *execution) flush(ctx context.Context) bool {
	if !x.dirty {
		return true
	}
	x.run.Summary = store.RunSummary{StepsTotal: len(x.steps)}
	for _, st := range x.steps {
		if st.Kind == store.StepModel {
			x.run.Summary.ModelCallsTotal++
		} else {
			x.run.Summary.ToolCallsTotal++
		}
	}
	_, err := x.s.commit(ctx, store.RunChange{TenantID: x.run.TenantID, RunID: x.run.RunID,
		FromStatuses: []store.RunStatus{x.from}, ExpectAttempt: x.expectAttempt, Run: &x.run,
		Steps: x.pendingSteps, Events: x.pendingEvents, Approval: x.pendingApproval,
		Dequeue: x.run.Status == store.RunRequiresAction})
	if err != nil {
		x.stopErr = err
		if !errors.Is(err, errs.ErrConflict) && ctx.Err() == nil {
			x.s.log.Warn("commit run change", "run_id", x.run.RunID, "err", err)
		}
		return false
	}
	x.from, x.expectAttempt = x.run.Status, x.run.Attempt
	x.pendingSteps, x.pendingEvents, x.dirty, x.pendingApproval = nil, nil, false, nil
	return true
}

func (x *execution) event(typ string, stepID string, payload any) store.Event {
	id := stepID
	return x.s.newEvent(x.run, typ, &id, x.tr.Child(), payload)
}

func (x *execution) lastModelStep() *store.Step {
	for i := len(x.steps) - 1; i >= 0; i-- {
		if x.steps[i].Kind == store.StepModel {
			return &x.steps[i]
		}
	}
	return nil
}

func (x *execution) modelCalls() int {
	n := 0
	for _, st := range x.steps {
		if st.Kind == store.StepModel {
			n++
		}
	}
	return n
}

func (x *execution) toolStepFor(modelStepID string, index int) *store.Step {
	for i := range x.steps {
		st := &x.steps[i]
		if st.Kind != store.StepTool {
			continue
		}
		var in toolStepInput
		if json.Unmarshal(st.Input, &in) == nil && in.ModelStepID == modelStepID && in.CallIndex == index {
			return st
		}
	}
	return nil
}

// stepError returns the error recorded on a failed step.
func stepError(st store.Step) *errs.Error {
	var out struct {
		Error *store.ErrorBody `json:"error"`
	}
	_ = json.Unmarshal(st.Output, &out) // written by this package
	if out.Error == nil {
		return errs.E(errs.Internal, "step %s failed without a recorded error", st.StepID)
	}
	return &errs.Error{Code: errs.Code(out.Error.Code), Message: out.Error.Message, Details: out.Error.Details}
}

// rejectedStep reports whether a failed tool step is a call a person
// rejected (or that expired): the model is told, the run goes on even with
// on_tool_error=fail.
func rejectedStep(st store.Step) bool {
	var out toolStepOutput
	return json.Unmarshal(st.Output, &out) == nil && out.Error != nil && out.Error.Code == codeApprovalRejected
}

func decodeModelOutput(st store.Step) modelStepOutput {
	var out modelStepOutput
	_ = json.Unmarshal(st.Output, &out) // written by this package
	return out
}

// allowedTools is agent tools ∩ run allowlist ∩ tenant entitlements − denymap.
func (x *execution) allowedTools() []string {
	var ids []string
	for _, id := range x.agent.Tools {
		if x.toolAllowed(id) {
			ids = append(ids, id)
		}
	}
	return ids
}

func (x *execution) toolAllowed(id string) bool {
	t := x.run.Tooling
	return slices.Contains(x.agent.Tools, id) &&
		(len(t.ToolAllowlist) == 0 || slices.Contains(t.ToolAllowlist, id)) &&
		x.tenant.Entitlements.AllowsTool(id) &&
		!slices.Contains(t.ToolDenymap, id)
}

// conversation rebuilds the chat from the run's input and recorded steps.
func (x *execution) conversation() []modelport.Message {
	msgs := []modelport.Message{}
	if x.agent.Instructions != "" {
		msgs = append(msgs, modelport.Message{Role: "system", Content: x.agent.Instructions})
	}
	msgs = append(msgs, x.history.messages...)
	msgs = append(msgs, modelport.Message{Role: "user", Content: x.run.Input.Text})
	for _, st := range x.steps {
		switch {
		case st.Kind == store.StepModel && st.Status == store.StepCompleted:
			out := decodeModelOutput(st)
			msgs = append(msgs, modelport.Message{Role: "assistant", Content: out.Message.Content, ToolCalls: out.ToolCalls})
		case st.Kind == store.StepTool && (st.Status == store.StepCompleted || st.Status == store.StepFailed):
			var in toolStepInput
			var out toolStepOutput
			_ = json.Unmarshal(st.Input, &in)
			_ = json.Unmarshal(st.Output, &out)
			content := string(out.Output)
			if out.Status != "ok" {
				b, _ := json.Marshal(map[string]any{"status": out.Status, "error": out.Error})
				content = string(b)
			}
			msgs = append(msgs, modelport.Message{Role: "tool", Content: content, ToolCallID: in.ModelCallID})
		}
	}
	return msgs
}

// callModel makes one model step (or finishes one that was in flight when
// the run was resumed). ok=false: stop executing; fatal: fail the run.
func (x *execution) callModel(ctx context.Context, resume *store.Step) (ok bool, fatal error) {
	s := x.s
	modelRef := x.agent.ModelRef
	if x.run.RunOptions.ModelTier != "" {
		modelRef = "tier:" + x.run.RunOptions.ModelTier
	}
	var specs []modelport.ToolSpec
	for _, spec := range x.toolSpecs(ctx) {
		specs = append(specs, modelport.ToolSpec{ToolID: spec.ToolID, Name: spec.Name, Description: spec.Description, InputSchema: spec.InputSchema})
	}
	msgs := x.conversation()
	var step store.Step
	if resume != nil {
		step = *resume
	} else {
		in, _ := json.Marshal(map[string]any{"model_ref": modelRef})
		step = store.Step{StepID: ids.New("stp_"), TenantID: x.run.TenantID, RunID: x.run.RunID, Index: len(x.steps),
			Kind: store.StepModel, Name: modelRef, Status: store.StepStarted, Input: in, StartedAt: s.cfg.Now().UTC()}
		x.stage([]store.Step{step},
			x.event(store.EventStepStarted, step.StepID, map[string]any{"step_kind": "model", "name": modelRef}),
			x.event(store.EventModelRequested, step.StepID, map[string]any{"model_ref": modelRef, "operation": "chat",
				"requirements": modelport.Requirements{}, "input_summary": x.inputSummary(len(msgs), len(specs) > 0)}))
	}
	if !x.flush(ctx) {
		return false, nil
	}
	req := modelport.ChatRequest{RequestID: ids.New("req_"), Operation: "chat", ModelRef: modelRef,
		Input: modelport.ChatInput{Messages: msgs, Tools: specs}, Generation: modelport.Generation{MaxOutputTokens: 1024},
		AgentID: x.run.AgentID, RunID: x.run.RunID}
	ctx, span := httpx.StartSpan(ctx, tracing.ModelSpanName("chat", modelRef), trace.SpanKindClient)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(tracing.GenAIOperation.String("chat"), tracing.GenAIRequestModel.String(modelRef),
			attribute.String("agentos.step_id", step.StepID), attribute.Int("agentos.step.index", step.Index))
	}
	start := time.Now()
	var deltas *deltaStream
	if x.run.RunOptions.StreamTokens() {
		deltas = x.startDeltas(ctx, step.StepID)
	}
	resp, err := x.chat(ctx, req, deltas)
	x.recordModelOutcome(ctx, err)
	retries := 0
	for failures := 0; err != nil && ctx.Err() == nil; {
		wait, retry := x.retryDelay(err, &failures)
		// A throttle is waited out in full; an outage's wait ends early
		// when the breaker closes.
		var wakeEarly <-chan struct{}
		if dependencyFailure(err) {
			wakeEarly = s.breaker.closedSignal()
		}
		if !retry || !sleepUntilRetry(ctx, wait, time.Now(), wakeEarly) {
			break
		}
		retries++
		s.metrics.retries.WithLabelValues("model").Inc()
		s.log.WarnContext(ctx, "retrying model call", "run_id", x.run.RunID, "step_id", step.StepID,
			"retry", retries, "after", wait.String(), "err", err)
		resp, err = x.chat(ctx, req, deltas)
		x.recordModelOutcome(ctx, err)
	}
	if deltas != nil {
		deltas.close(ctx) // every delta is committed before model.completed
	}
	if ctx.Err() != nil {
		return false, nil
	}
	latency := time.Since(start)
	s.metrics.stepDuration.WithLabelValues("model").Observe(latency.Seconds())
	now := s.cfg.Now().UTC()
	step.CompletedAt = &now
	tracing.Fail(span, err)
	if err == nil {
		tracing.ModelUsage(span, resp.Route.Backend, resp.Route.Model, resp.Usage.InputTokens, resp.Usage.OutputTokens, "")
	}
	if err != nil {
		e := errs.As(err)
		s.metrics.modelCalls.WithLabelValues("error").Inc()
		body := errorBody(e)
		// The call failed after (or before) governance: unless policy itself
		// refused it, policy allowed it.
		decision := "allowed"
		if e.Code == errs.PolicyBlocked {
			decision = "blocked"
		}
		step.Status = store.StepFailed
		step.Output, _ = json.Marshal(map[string]any{"status": "error", "error": body})
		x.stage([]store.Step{step}, x.event(store.EventModelCompleted, step.StepID, map[string]any{
			"model_ref": modelRef, "operation": "chat", "status": "error", "usage": modelport.Usage{},
			"latency_ms": latency.Milliseconds(), "error": body, "retries": retries,
			"policy_outcome": modelport.PolicyOutcome{Decision: decision, Reasons: []string{e.Message}, Redactions: []modelport.Redaction{}},
			"route":          modelport.Route{}}))
		return true, e
	}
	s.metrics.modelCalls.WithLabelValues("ok").Inc()
	status := resp.Status
	if status == "" {
		status = "ok"
	}
	out := modelStepOutput{Status: status, Message: resp.Output.Message, ToolCalls: resp.Output.ToolCalls,
		Usage: resp.Usage, Route: resp.Route, PolicyOutcome: resp.PolicyOutcome}
	step.Status = store.StepCompleted
	step.Output, _ = json.Marshal(out)
	x.stage([]store.Step{step}, x.event(store.EventModelCompleted, step.StepID, map[string]any{
		"model_ref": modelRef, "operation": "chat", "status": status, "usage": resp.Usage,
		"latency_ms": latency.Milliseconds(), "policy_outcome": resp.PolicyOutcome, "route": resp.Route, "retries": retries}))
	return true, nil
}

// recordModelOutcome feeds the breaker one model call's outcome, unless
// the run itself was stopped meanwhile (cancel, timeout, lost lease): that
// says nothing about model-policy.
func (x *execution) recordModelOutcome(ctx context.Context, err error) {
	if ctx.Err() == nil {
		x.s.breaker.record(err)
	}
}

// retryDelay says whether and when to call the model again after err.
// Non-retryable errors fail the step at once. rate_limited is a throttle,
// not a failure: it is waited out (Retry-After) and never counts against
// model_retries. Other retryable errors (model-policy or a provider behind
// it unavailable) back off exponentially with jitter, honouring
// Retry-After, until the run's deadline, or at most model_retries times
// when the agent sets it (0, the default, means no cap but the deadline).
func (x *execution) retryDelay(err error, failures *int) (time.Duration, bool) {
	e := errs.As(err)
	if !e.Code.Retryable() {
		return 0, false
	}
	if e.Code == errs.RateLimited {
		wait := e.RetryAfter
		if wait <= 0 {
			wait = time.Second
		}
		return wait + time.Duration(rand.Int64N(int64(250*time.Millisecond))), true
	}
	if n := x.agent.Defaults.ModelRetries; n > 0 && *failures >= n {
		return 0, false
	}
	wait := backoff(*failures, e.RetryAfter)
	*failures++
	return wait, true
}

func (x *execution) toolSpecs(ctx context.Context) []tools.Spec {
	var specs []tools.Spec
	for _, id := range x.allowedTools() {
		t, ok, err := x.s.resolveTool(ctx, x.run.TenantID, id)
		if err != nil {
			// The model is not offered the tool; a call to it fails on its own.
			x.s.log.WarnContext(ctx, "tool not resolved", "tool_id", id, "run_id", x.run.RunID, "err", err)
		}
		if ok {
			specs = append(specs, t.Spec())
		}
	}
	return specs
}

// callTool executes the index-th tool call planned by a model step, or
// settles one that was in flight when the run was resumed. ok=false: stop
// executing; fatal: fail the run (agent policy on_tool_error=fail).
func (x *execution) callTool(ctx context.Context, modelStepID string, index int, call modelport.ToolCall) (ok bool, fatal error) {
	s := x.s
	toolID := call.ToolID
	if toolID == "" {
		toolID = call.Name
	}
	tool, found, resolveErr := s.resolveTool(ctx, x.run.TenantID, toolID)
	var spec tools.Spec
	if found {
		spec = tool.Spec()
	}
	timeout := spec.DefaultTimeout
	if timeout <= 0 {
		timeout = tools.FallbackTimeout
	}
	var result toolStepOutput
	step := x.toolStepFor(modelStepID, index)
	// An approved call's step exists already (awaiting approval): it is
	// started now, keeping its step and tool call ids.
	approved := step != nil && step.Status == store.StepAwaitingApproval
	resumed := step != nil && !approved
	if resumed && !spec.Idempotent {
		// In flight when the executor stopped, and not safe to run twice.
		result = toolStepOutput{Status: "error", Error: &store.ErrorBody{Code: codeInterrupted,
			Message: fmt.Sprintf("tool %s was in flight when its executor stopped; it is not idempotent, so it was not run again", toolID)}}
	} else if !resumed {
		in, _ := json.Marshal(toolStepInput{ModelStepID: modelStepID, CallIndex: index, ModelCallID: call.ID, ToolID: toolID, Arguments: call.Arguments})
		st := store.Step{StepID: ids.New("stp_"), TenantID: x.run.TenantID, RunID: x.run.RunID, Index: len(x.steps),
			Kind: store.StepTool, Name: toolID, Status: store.StepStarted, ToolCallID: ids.New("tcall_"), Input: in, StartedAt: s.cfg.Now().UTC()}
		if approved {
			st.StepID, st.Index, st.ToolCallID, st.Input = step.StepID, step.Index, step.ToolCallID, step.Input
		}
		args := call.Arguments
		if len(args) == 0 {
			args = json.RawMessage(`{}`)
		}
		evs := []store.Event{x.event(store.EventStepStarted, st.StepID, map[string]any{"step_kind": "tool", "name": toolID})}
		if approved {
			evs = nil // its step.started came with the approval request
		}
		x.stage([]store.Step{st}, append(evs,
			x.event(store.EventToolCallRequested, st.StepID, map[string]any{"tool_call_id": st.ToolCallID, "tool_id": toolID,
				"input": args, "timeout_ms": timeout.Milliseconds()}))...)
		step = x.toolStepFor(modelStepID, index)
	}
	st := *step
	if result.Status == "" && resolveErr != nil {
		if ctx.Err() != nil {
			return false, nil // the run itself was stopped
		}
		result = toolStepOutput{Status: "error", Error: errorBody(errs.Wrap(errs.DependencyUnavailable, resolveErr,
			"tool %s could not be looked up: %v", toolID, resolveErr))}
	}
	if result.Status == "" {
		if !x.flush(ctx) { // the call is on record before it runs
			return false, nil
		}
		tctx, span := httpx.StartSpan(ctx, "execute_tool "+toolID, trace.SpanKindInternal)
		if span.IsRecording() {
			span.SetAttributes(tracing.GenAIOperation.String("execute_tool"), attribute.String("gen_ai.tool.name", toolID),
				attribute.String("gen_ai.tool.call.id", st.ToolCallID), attribute.String("agentos.step_id", st.StepID))
		}
		result = x.invokeTool(tctx, tool, found, toolID, st, call.Arguments, timeout)
		if result.Status != "ok" && result.Error != nil {
			tracing.FailStatus(span, result.Error.Code+": "+result.Error.Message)
		}
		span.End()
		if result.Status == "" {
			return false, nil // the run itself was stopped
		}
	}
	now := s.cfg.Now().UTC()
	st.CompletedAt = &now
	st.Status = store.StepCompleted
	if result.Status != "ok" {
		st.Status = store.StepFailed
	}
	st.Output, _ = json.Marshal(result)
	s.metrics.toolCalls.WithLabelValues(toolID, result.Status).Inc()
	output := result.Output
	if output == nil {
		output = json.RawMessage("null")
	}
	completed := map[string]any{
		"tool_call_id": st.ToolCallID, "tool_id": toolID, "status": result.Status, "output": output,
		"duration_ms": result.DurationMs, "error": result.Error, "retries": result.Retries}
	if result.WorkerID != "" {
		completed["worker_id"] = result.WorkerID
	}
	x.stage([]store.Step{st}, x.event(store.EventToolCallCompleted, st.StepID, completed))
	if result.Status != "ok" && x.agent.Defaults.OnToolError == "fail" {
		return true, &errs.Error{Code: errs.Code(result.Error.Code), Message: "tool " + toolID + " failed: " + result.Error.Message}
	}
	return true, nil
}

// invokeTool applies the permission, rate-limit and dry-run rules and runs
// the tool through tools.InvokeTool (input schema, deadline, panic
// recovery, output bound), retrying an idempotent tool's retryable
// failures. An empty Status means the run was stopped meanwhile.
func (x *execution) invokeTool(ctx context.Context, tool tools.Tool, found bool, toolID string, st store.Step, args json.RawMessage, timeout time.Duration) toolStepOutput {
	s := x.s
	fail := func(e *errs.Error) toolStepOutput {
		return toolStepOutput{Status: "error", Error: errorBody(e)}
	}
	switch {
	case !found:
		return fail(errs.E(errs.NotFound, "tool %s is not registered on this node", toolID))
	case !x.toolAllowed(toolID):
		return fail(errs.E(errs.Forbidden, "tool %s is not permitted for this run (agent tools ∩ run allowlist ∩ tenant entitlements − denymap)", toolID))
	}
	if ok, _ := s.cfg.Limiter.AllowPerMinute(x.run.TenantID, tenancy.LimitToolCalls, x.tenant.Quotas.Tools.ToolCallsPerMinute); !ok {
		return fail(errs.E(errs.RateLimited, "tenant %s exceeded tool_calls_per_minute=%d", x.run.TenantID, x.tenant.Quotas.Tools.ToolCallsPerMinute))
	}
	if x.run.RunOptions.DryRun {
		return toolStepOutput{Status: "ok", Output: json.RawMessage(`{"dry_run":true,"executed":false}`)}
	}
	if len(args) == 0 {
		args = json.RawMessage(`{}`)
	}
	if labels := x.agent.Placement.LabelsFor(toolID); len(labels) > 0 {
		return x.invokeOnWorker(ctx, tool, labels, st, args, timeout)
	}
	call := tools.Call{Auth: x.ac, TenantID: x.run.TenantID, AgentID: x.run.AgentID,
		RunID: x.run.RunID, StepID: st.StepID, ToolCallID: st.ToolCallID, Input: args}
	// Each attempt gets the tool's timeout; timedOut says the last one ran
	// out (a deadline while the run's own context is live is the call's).
	var timedOut bool
	attempt := func() (json.RawMessage, error) {
		out, err := tools.InvokeTool(ctx, tool, call, timeout)
		timedOut = errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
		return out, err
	}
	start := time.Now()
	out, err := attempt()
	retries := 0
	for ; err != nil && ctx.Err() == nil && !timedOut && retryableToolFailure(tool.Spec(), err) && retries < toolRetries; retries++ {
		wait := backoff(retries, errs.As(err).RetryAfter)
		if !sleepUntilRetry(ctx, wait, time.Now(), nil) {
			break
		}
		s.metrics.retries.WithLabelValues("tool").Inc()
		s.log.WarnContext(ctx, "retrying tool call", "run_id", x.run.RunID, "step_id", st.StepID, "tool_id", toolID,
			"retry", retries+1, "after", wait.String(), "err", err)
		out, err = attempt()
	}
	d := time.Since(start)
	s.metrics.toolDuration.WithLabelValues(toolID).Observe(d.Seconds())
	s.metrics.stepDuration.WithLabelValues("tool").Observe(d.Seconds())
	if ctx.Err() != nil {
		return toolStepOutput{} // canceled, timed out or lost as a whole
	}
	res := toolStepOutput{Status: "ok", Output: out, DurationMs: d.Milliseconds(), Retries: retries}
	switch {
	case timedOut:
		res.Status, res.Output = "timeout", nil
		res.Error = errorBody(errs.E(errs.Timeout, "tool %s did not finish within %s", toolID, timeout))
	case err != nil:
		res.Status, res.Output = "error", nil
		res.Error = errorBody(errs.As(err))
	}
	return res
}

// invokeOnWorker runs a placed call on a worker node (internal/dispatch):
// the worker runs it, the orchestrator keeps every decision (input
// schema, permissions and quotas before; what a dead worker means after).
// An empty Status means the run was stopped meanwhile.
func (x *execution) invokeOnWorker(ctx context.Context, tool tools.Tool, labels map[string]string, st store.Step,
	args json.RawMessage, timeout time.Duration) toolStepOutput {
	spec := tool.Spec()
	fail := func(e *errs.Error) toolStepOutput { return toolStepOutput{Status: "error", Error: errorBody(e)} }
	if x.s.cfg.Workers == nil {
		return fail(errs.E(errs.DependencyUnavailable,
			"tool %s is placed on workers but this node has none: worker nodes need the NATS bus (AGENTOS_BUS_URL, the cluster profile)", spec.ToolID))
	}
	if err := tools.ValidateInput(spec.InputSchema, args); err != nil {
		return fail(errs.As(err))
	}
	start := time.Now()
	out, err := x.s.cfg.Workers.Run(ctx, dispatch.Call{Labels: labels, TenantID: x.run.TenantID, AgentID: x.run.AgentID,
		RunID: x.run.RunID, StepID: st.StepID, ToolCallID: st.ToolCallID, ToolID: spec.ToolID, Input: args, Auth: x.ac,
		Idempotent: spec.Idempotent, Timeout: timeout, Traceparent: x.tr.Child().Traceparent()})
	d := time.Since(start)
	if err != nil || ctx.Err() != nil {
		return toolStepOutput{} // canceled, timed out or lost as a whole
	}
	x.s.metrics.toolDuration.WithLabelValues(spec.ToolID).Observe(d.Seconds())
	x.s.metrics.stepDuration.WithLabelValues("tool").Observe(d.Seconds())
	res := toolStepOutput{Status: "ok", Output: out.Output, DurationMs: d.Milliseconds(), Retries: out.Attempts - 1, WorkerID: out.WorkerID}
	if out.Err != nil {
		res.Status, res.Output, res.Error = "error", nil, errorBody(out.Err)
		if out.Err.Code == errs.Timeout {
			res.Status = "timeout"
		}
	}
	return res
}

// toolRetries caps the retries of one idempotent tool call: with
// backoff's delays (breaker.go) they span roughly 5-10 s, enough to ride out a webhook's
// restart, while a webhook that is broken for good fails the call in
// seconds rather than holding the run until its deadline.
const toolRetries = 6

// retryableToolFailure says whether a failed tool call may be made again:
// only for a tool declared idempotent (a non-idempotent one may have acted
// on a request it failed to answer), and only when the tool, not this
// request, is the problem: unreachable, 5xx, or throttling (429; the
// tenant's own tool quota is checked before the call and never retried).
func retryableToolFailure(spec tools.Spec, err error) bool {
	if !spec.Idempotent {
		return false
	}
	switch errs.As(err).Code {
	case errs.DependencyUnavailable, errs.RateLimited:
		return true
	}
	return false
}

func errorBody(e *errs.Error) *store.ErrorBody {
	msg := e.Message
	if e.Code == errs.Internal && msg == "" {
		msg = "internal error"
	}
	return &store.ErrorBody{Code: string(e.Code), Message: msg, Retryable: e.Code.Retryable(), Details: e.Details}
}

// finish writes the terminal state and event. It returns whether the run is
// terminal (true also when someone else made it terminal first).
func (x *execution) finish(ctx context.Context, status store.RunStatus, out *store.Output, eb *store.ErrorBody) bool {
	s := x.s
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	now := s.cfg.Now().UTC()
	x.run.Status, x.run.CompletedAt, x.run.Output, x.run.Error = status, &now, out, eb
	if status == store.RunCompleted {
		x.stage(nil, s.newEvent(x.run, store.EventRunCompleted, nil, x.tr.Child(), map[string]any{"status": status, "output": out}))
	} else {
		x.stage(nil, s.newEvent(x.run, store.EventRunFailed, nil, x.tr.Child(), map[string]any{"status": status, "error": eb}))
	}
	if !x.flush(ctx) {
		if errors.Is(x.stopErr, errs.ErrConflict) {
			return x.terminalInStore(ctx)
		}
		s.log.Error("finish run", "run_id", x.run.RunID, "err", x.stopErr)
		return false
	}
	s.metrics.runsTotal.WithLabelValues(string(status), s.metrics.tenants.label(x.run.TenantID)).Inc()
	s.metrics.runDuration.WithLabelValues(string(status)).Observe(now.Sub(x.run.CreatedAt).Seconds())
	s.log.Debug("run finished", "run_id", x.run.RunID, "tenant_id", x.run.TenantID, "status", status)
	return true
}

// terminalInStore reports, after a write of this executor conflicted,
// whether the run is terminal: usually a cancel got there first. With
// replicas sharing a queue it may instead be another executor that took
// the run over after this one's lease lapsed; then the run is not
// terminal, and this executor must not ack the queue entry (the other one
// holds it). When the store cannot say, the answer is no: the entry stays
// and the run is looked at again.
func (x *execution) terminalInStore(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	run, err := x.s.cfg.Store.GetRun(ctx, x.run.TenantID, x.run.RunID)
	return err == nil && run.Status.Terminal()
}

func (x *execution) finishErr(ctx context.Context, err error) bool {
	return x.finish(ctx, store.RunFailed, nil, errorBody(errs.As(err)))
}

// stopped decides what a stopped executor means for its run.
func (x *execution) stopped(ctx context.Context) bool {
	cause := context.Cause(ctx)
	if cause == nil {
		cause = x.stopErr
	}
	switch {
	case errors.Is(cause, errRunTimeout):
		return x.finishErr(ctx, errs.E(errs.Timeout, "the run exceeded timeout_ms=%d", x.run.RunOptions.TimeoutMs))
	case errors.Is(cause, errRunCanceled):
		return true // canceled
	case errors.Is(cause, errs.ErrConflict):
		return x.terminalInStore(ctx)
	default:
		return false // shutdown, lost lease or store trouble: resumed later
	}
}
