package builtin

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/tools"
)

// SleepID is the id of the sleep tool.
const SleepID = "tool.sleep"

// MaxSleep bounds one tool.sleep call.
const MaxSleep = time.Minute

var sleepSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "duration": {"type": "string", "description": "How long to wait, a Go duration such as 250ms or 2s (at most 1m)."}
  },
  "required": ["duration"]
}`)

type sleep struct{}

// Sleep returns tool.sleep: {"duration": "2s"} waits that long, then
// answers {"slept_ms": n}. It paces demos and lets tests hold a call in
// flight (a worker killed mid-task); idempotent, it has no effect.
func Sleep() tools.Tool { return sleep{} }

func (sleep) Spec() tools.Spec {
	return tools.Spec{
		ToolID:         SleepID,
		Name:           "sleep",
		Description:    "Waits the given duration (at most 1m), then returns.",
		InputSchema:    sleepSchema,
		Idempotent:     true,
		DefaultTimeout: MaxSleep + 5*time.Second,
	}
}

func (sleep) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	var in struct {
		Duration string `json:"duration"`
	}
	if err := tools.DecodeInput(sleepSchema, c.Input, &in); err != nil {
		return nil, err
	}
	d, err := time.ParseDuration(in.Duration)
	if err != nil || d < 0 || d > MaxSleep {
		return nil, errs.Field("duration", "want a Go duration from 0 to 1m (such as 250ms or 2s), got %q", in.Duration)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, tools.ContextError(ctx, SleepID)
	}
	return marshal(SleepID, map[string]int64{"slept_ms": d.Milliseconds()})
}
