package agentorchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/queue"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tracing"
)

// Run error codes beyond the contract's table (additive, documented in the
// OpenAPI file).
const (
	codeMaxSteps    = "max_steps_exceeded"
	codeInterrupted = "interrupted"
)

// modelStepOutput is what a completed model step records: enough to rebuild
// the conversation when the run is resumed.
type modelStepOutput struct {
	Status        string                  `json:"status"`
	Message       modelport.Message       `json:"message"`
	ToolCalls     []modelport.ToolCall    `json:"tool_calls"`
	Usage         modelport.Usage         `json:"usage"`
	Route         modelport.Route         `json:"route"`
	PolicyOutcome modelport.PolicyOutcome `json:"policy_outcome"`
}

// toolStepInput links a tool step to the model call that planned it.
type toolStepInput struct {
	ModelStepID string          `json:"model_step_id"`
	CallIndex   int             `json:"call_index"`
	ModelCallID string          `json:"model_call_id"`
	ToolID      string          `json:"tool_id"`
	Arguments   json.RawMessage `json:"arguments"`
	// Approval is set on a call that needed a person's decision (approval.go).
	Approval *stepApproval `json:"approval,omitempty"`
}

// toolStepOutput is the recorded result of a tool call, reused on resume.
type toolStepOutput struct {
	Status     string           `json:"status"` // ok, error, timeout
	Output     json.RawMessage  `json:"output"`
	Error      *store.ErrorBody `json:"error"`
	DurationMs int64            `json:"duration_ms"`
	// Retries is how many times the call was made again after a retryable
	// failure (idempotent tools only).
	Retries int `json:"retries,omitempty"`
	// WorkerID names the worker node that ran a placed call.
	WorkerID string `json:"worker_id,omitempty"`
}

// execution is the state of one run being executed by this process.
type execution struct {
	s      *Server
	run    store.Run
	agent  store.Agent
	tenant store.Tenant
	ac     auth.Context
	steps  []store.Step
	tr     httpx.Trace
	// stopErr is why the last commit failed (a conflict means the run was
	// made terminal by someone else, e.g. a cancel).
	stopErr error

	// What the next flush commits, and what it expects the run to be.
	pendingSteps  []store.Step
	pendingEvents []store.Event
	dirty         bool
	from          store.RunStatus
	expectAttempt int

	// history is the thread's earlier conversation (runs on a thread).
	history threadHistory
	// pendingApproval goes with the next flush (approval.go).
	pendingApproval *store.Approval
}

// execute drives a leased run until it is terminal (true: ack the entry)
// or this executor must let go of it (false: shutdown, lost lease, store
// trouble or a disabled tenant; the entry stays and the run is leased
// again later).
func (s *Server) execute(ctx context.Context, l queue.Lease) bool {
	run, err := s.cfg.Store.GetRun(ctx, l.TenantID, l.RunID)
	if errors.Is(err, errs.ErrNotFound) {
		return true // an orphan queue entry
	}
	if err != nil {
		return false
	}
	if run.Status.Terminal() || run.Status == store.RunRequiresAction {
		return true // requires_action: waits without an entry; a decision queues it again
	}
	x := &execution{s: s, run: run, tr: httpx.ParseTraceparent(run.Traceparent)}
	ctx = httpx.WithTrace(httpx.WithCorrelationID(ctx, run.CorrelationID), x.tr)
	// One span per execution (a resumed run gets another), a child of the
	// request that created the run.
	ctx, span := httpx.StartSpan(ctx, "run "+run.AgentID, trace.SpanKindInternal)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("agentos.run_id", run.RunID), attribute.String("agentos.tenant_id", run.TenantID),
			attribute.String("agentos.agent_id", run.AgentID), attribute.Int("agentos.run.attempt", run.Attempt+1))
		defer func() {
			span.SetAttributes(attribute.String("agentos.run.status", string(x.run.Status)))
			if x.run.Status == store.RunFailed {
				tracing.FailStatus(span, "run failed")
			}
		}()
	}
	defer span.End()
	x.ac = auth.Context{
		TenantID:  run.TenantID,
		Principal: auth.Principal{PrincipalID: run.PrincipalID, PrincipalType: "user"},
		Scopes:    []string{auth.ScopeModelsInvoke, auth.ScopePolicyCheck, auth.ScopeToolsInvoke, auth.ScopeMemoryRead, auth.ScopeMemoryWrite},
		Roles:     []string{auth.RoleTenantService},
		Session:   map[string]any{"run_id": run.RunID, "agent_id": run.AgentID},
	}

	if x.agent, err = s.cfg.Store.GetAgent(ctx, run.TenantID, run.AgentID); err != nil {
		if !errors.Is(err, errs.ErrNotFound) {
			return false // store trouble: resumed later
		}
		x.startRun()
		return x.finishErr(ctx, errs.Wrap(errs.NotFound, err, "agent %s is gone", run.AgentID))
	}
	if x.tenant, err = s.tenantOf(ctx, run.TenantID); err != nil {
		return false
	}
	if x.tenant.Status != store.TenantActive {
		// Leased just before the scheduler saw the tenant disabled: leave
		// the run queued (paused) until it is enabled again.
		return false
	}
	if x.history, err = s.threadHistory(ctx, run); err != nil {
		return false // store trouble: resumed later
	}
	x.startRun()
	if run.Status == store.RunRunning {
		// Resuming: claim the run (attempt+1) before reading its steps, so
		// that a stale executor still holding it can write nothing after
		// what we read.
		if !x.flush(ctx) {
			return x.stopped(ctx)
		}
		s.metrics.resumed.Inc()
		s.log.Info("resuming run", "run_id", run.RunID, "tenant_id", run.TenantID, "attempt", x.run.Attempt)
	}
	if x.steps, err = s.cfg.Store.ListSteps(ctx, run.TenantID, run.RunID); err != nil {
		return false
	}
	run = x.run

	// Time spent waiting for approvals does not count against timeout_ms.
	deadline := run.StartedAt.Add(time.Duration(run.RunOptions.TimeoutMs)*time.Millisecond + approvalWait(x.steps))
	runCtx, cancel := context.WithDeadlineCause(ctx, deadline, errRunTimeout)
	defer cancel()
	return x.loop(runCtx)
}

var errRunTimeout = errors.New("run timeout")

// startRun stages the start (or resumption) of the run: running, one more
// attempt. The first flush commits it as a compare-and-set on the status
// and attempt it was leased with, so of two executors resuming the same
// run one wins, and a stale executor can no longer write.
func (x *execution) startRun() {
	now := x.s.cfg.Now().UTC()
	x.from, x.expectAttempt = x.run.Status, x.run.Attempt
	if x.run.StartedAt == nil {
		x.run.StartedAt = &now
	}
	x.run.Status = store.RunRunning
	x.run.Attempt++
	x.dirty = true
}

// tenantActive refuses the next model or tool call of a run whose tenant
// was disabled while it ran: a disabled tenant gets nothing more done
// (CONTRACT §3). The tenant is read through the node's cache, so this
// costs no store read per step and sees a disable within its TTL. When
// the store cannot answer, the call goes ahead (the tenant was active when
// the run started).
func (x *execution) tenantActive(ctx context.Context) error {
	t, err := x.s.tenantOf(ctx, x.run.TenantID)
	if err != nil || t.Status == store.TenantActive {
		return nil
	}
	return errs.E(errs.Forbidden, "tenant %s is %s; the run was stopped", t.TenantID, t.Status).
		WithDetails(map[string]any{"tenant_status": t.Status})
}

// loop is the agent loop: model call, tool calls, repeat, until a final
// answer, max_steps, the deadline or cancellation. It returns whether the
// run is terminal.
func (x *execution) loop(ctx context.Context) bool {
	for {
		if ctx.Err() != nil {
			return x.stopped(ctx)
		}
		last := x.lastModelStep()
		var resume *store.Step
		if last != nil && last.Status == store.StepStarted {
			// The model call was in flight when the previous executor
			// stopped: model calls have no side effects, so call again.
			resume = last
		} else if last != nil && last.Status == store.StepFailed {
			// The model call failed and the executor stopped before writing
			// run.failed: finish what it started.
			return x.finishErr(ctx, stepError(*last))
		} else if last != nil {
			out := decodeModelOutput(*last)
			if len(out.ToolCalls) == 0 {
				return x.finish(ctx, store.RunCompleted, &store.Output{Type: "text", Text: out.Message.Content}, nil)
			}
			for i, call := range out.ToolCalls {
				ts := x.toolStepFor(last.StepID, i)
				if ts != nil && ts.Status != store.StepStarted && ts.Status != store.StepAwaitingApproval {
					if ts.Status == store.StepFailed && x.agent.Defaults.OnToolError == "fail" && !rejectedStep(*ts) {
						return x.finishErr(ctx, stepError(*ts))
					}
					continue // completed before: its recorded result is reused
				}
				if err := x.tenantActive(ctx); err != nil {
					return x.finishErr(ctx, err)
				}
				call, g := x.approvalGate(ctx, last.StepID, i, call, ts)
				if g == gateWait {
					return x.park(ctx)
				} else if g == gateSettled {
					continue
				}
				if ok, fatal := x.callTool(ctx, last.StepID, i, call); !ok {
					return x.stopped(ctx)
				} else if fatal != nil {
					return x.finishErr(ctx, fatal)
				}
			}
			if x.modelCalls() >= x.run.RunOptions.MaxSteps {
				return x.finishErr(ctx, &errs.Error{Code: codeMaxSteps,
					Message: fmt.Sprintf("the run reached max_steps=%d model steps without a final answer", x.run.RunOptions.MaxSteps)})
			}
		}
		if err := x.tenantActive(ctx); err != nil {
			return x.finishErr(ctx, err)
		}
		if ok, fatal := x.callModel(ctx, resume); !ok {
			return x.stopped(ctx)
		} else if fatal != nil {
			return x.finishErr(ctx, fatal)
		}
	}
}
