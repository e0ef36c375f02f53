package modelpolicy

import (
	"encoding/json"
	"testing"

	"github.com/nexixai/agentos/internal/httpx"
)

// FuzzDecodeBodies checks that request decoding of every endpoint body
// never panics and either fails with an error or yields a value.
func FuzzDecodeBodies(f *testing.F) {
	f.Add([]byte(`{"auth":{"tenant_id":"t"},"request":{"operation":"chat","input":{"messages":[{"role":"user","content":"x"}]}}}`))
	f.Add([]byte(`{"model":"tier:fast","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"tool_choice":{"type":"function","function":{"name":"f"}}}`))
	f.Add([]byte(`{"policy_check":{"content":{"text":"a@b.io"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ib invokeBody
		if httpx.DecodeBytes(b, &ib) == nil && ib.Request != nil && len(ib.Request.Input) > 0 {
			var in struct{ Messages []json.RawMessage }
			_ = decodeField("request.input", ib.Request.Input, &in)
		}
		var cc chatCompletionRequest
		if httpx.DecodeBytes(b, &cc) == nil {
			_, _ = toolChoice(cc.ToolChoice)
		}
		var pc policyCheckBody
		_ = httpx.DecodeBytes(b, &pc)
	})
}
