package builtin

import (
	"context"
	"encoding/json"

	"github.com/nexixai/agentos/internal/tools"
)

// EchoID is the id of the echo tool.
const EchoID = "tool.echo"

var echoSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "text": {"type": "string", "description": "Text to echo back."}
  },
  "required": ["text"]
}`)

type echo struct{}

// Echo returns tool.echo: {"text": string} → {"text": the same string}.
func Echo() tools.Tool { return echo{} }

func (echo) Spec() tools.Spec {
	return tools.Spec{
		ToolID:      EchoID,
		Name:        "echo",
		Description: "Returns the given text unchanged.",
		InputSchema: echoSchema,
		Idempotent:  true,
	}
}

func (echo) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	if err := tools.ContextError(ctx, EchoID); err != nil {
		return nil, err
	}
	var in struct {
		Text string `json:"text"`
	}
	if err := tools.DecodeInput(echoSchema, c.Input, &in); err != nil {
		return nil, err
	}
	return marshal(EchoID, map[string]string{"text": in.Text})
}
