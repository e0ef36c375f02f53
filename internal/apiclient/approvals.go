package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/nexixai/agentos/internal/store"
)

// Decisions of POST /v1/runs/{run_id}:resume.
const (
	DecisionApprove = "approve"
	DecisionReject  = "reject"
	DecisionEdit    = "edit"
)

// Resume is the body of POST /v1/runs/{run_id}:resume: approve, reject or
// edit (with Arguments) the tool call a requires_action run waits on.
type Resume struct {
	Decision  string          `json:"decision"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	Comment   string          `json:"comment,omitempty"`
}

// ResumeRun decides the tool call runID waits on and returns the run
// (queued again). A run not awaiting action is errs.ErrConflict; a bad
// decision or arguments errs.ErrInvalid naming the field.
func (c *Client) ResumeRun(ctx context.Context, runID string, r Resume) (store.Run, error) {
	var out struct {
		Run store.Run `json:"run"`
	}
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/runs/"+url.PathEscape(runID)+":resume", r, &out)
	return out.Run, err
}

// RequiredAction is the pending tool call of a requires_action run, as its
// agentos.run.requires_action event carries it.
type RequiredAction struct {
	Type       string          `json:"type"`
	ToolCallID string          `json:"tool_call_id"`
	ToolID     string          `json:"tool_id"`
	Arguments  json.RawMessage `json:"arguments"`
	StepID     string          `json:"step_id"`
	Reason     string          `json:"reason"`
	Deadline   time.Time       `json:"deadline"`
}

// PendingAction returns the tool call runID waits on: the last
// agentos.run.requires_action event's, when no agentos.run.resumed came
// after it; ok=false when the run waits on nothing.
func (c *Client) PendingAction(ctx context.Context, runID string) (ra RequiredAction, ok bool, err error) {
	evs, err := c.ListEvents(ctx, runID)
	if err != nil {
		return ra, false, err
	}
	for i := len(evs) - 1; i >= 0; i-- {
		switch evs[i].Type {
		case store.EventRunResumed:
			return ra, false, nil
		case store.EventRunRequiresAction:
			var p struct {
				RequiredAction RequiredAction `json:"required_action"`
			}
			if err := json.Unmarshal(evs[i].Payload, &p); err != nil {
				return ra, false, err
			}
			return p.RequiredAction, true, nil
		}
	}
	return ra, false, nil
}
