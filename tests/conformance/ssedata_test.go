package conformance

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCheckSSEData: a stream documented with x-sse-data-schema (the /mcp
// endpoint's JSON-RPC messages) is checked frame by frame against that
// schema, not as a run's event stream.
func TestCheckSSEData(t *testing.T) {
	t.Parallel()
	s := LoadSpec(t, "agent-orchestrator")
	ok := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
	require.NoError(t, s.CheckSSEData([]byte(ok), "JsonRpcMessage"))
	for _, bad := range []string{
		"event: message\ndata: {\"id\":1,\"result\":{}}\n\n",       // no jsonrpc
		"event: message\ndata: {\"jsonrpc\":\"1.0\",\"id\":1}\n\n", // wrong version
		"event: message\ndata: not json\n\n",
	} {
		require.Error(t, s.CheckSSEData([]byte(bad), "JsonRpcMessage"), bad)
	}
	require.Error(t, s.CheckSSEData([]byte(ok), "NoSuchSchema"))
}
