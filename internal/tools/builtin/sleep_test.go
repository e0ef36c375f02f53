package builtin_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/tools/toolstest"
)

func TestSleepConformance(t *testing.T) {
	t.Parallel()
	toolstest.Run(t, func(*testing.T) tools.Tool { return builtin.Sleep() },
		toolstest.Case{Name: "short", Input: []byte(`{"duration":"5ms"}`), Check: func(t *testing.T, out json.RawMessage) {
			require.JSONEq(t, `{"slept_ms":5}`, string(out))
		}},
		toolstest.Case{Name: "zero", Input: []byte(`{"duration":"0s"}`), Check: func(t *testing.T, out json.RawMessage) {
			require.JSONEq(t, `{"slept_ms":0}`, string(out))
		}},
		toolstest.Case{Name: "too long", Input: []byte(`{"duration":"2m"}`), WantCode: errs.InvalidRequest, WantField: "duration"},
		toolstest.Case{Name: "negative", Input: []byte(`{"duration":"-1s"}`), WantCode: errs.InvalidRequest, WantField: "duration"},
		toolstest.Case{Name: "not a duration", Input: []byte(`{"duration":"soon"}`), WantCode: errs.InvalidRequest, WantField: "duration"},
		toolstest.Case{Name: "missing", Input: []byte(`{}`), WantCode: errs.InvalidRequest, WantField: "duration"},
	)
}
