package providers

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

func TestReadSSE(t *testing.T) {
	t.Parallel()
	var got []SSEEvent
	err := ReadSSE(strings.NewReader(": comment\nevent: a\ndata: 1\ndata: 2\n\r\ndata: x\n\ndata: tail"), func(e SSEEvent) error {
		got = append(got, e)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []SSEEvent{{Event: "a", Data: "1\n2"}, {Data: "x"}, {Data: "tail"}}, got)
}

func TestStatusError(t *testing.T) {
	t.Parallel()
	require.Equal(t, errs.DependencyUnavailable, StatusError("b", 502, "").Code)
	require.Equal(t, errs.Timeout, StatusError("b", 408, "").Code)
	require.Equal(t, errs.InvalidRequest, StatusError("b", 422, "x").Code)
	require.Equal(t, "a_b-c", WireName("a.b-c"))
	require.Equal(t, "tool", WireName(""))
}

func FuzzReadSSE(f *testing.F) {
	f.Add("event: x\ndata: {}\n\ndata: [DONE]\n\n")
	f.Add(": ping\n\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		n := 0
		_ = ReadSSE(strings.NewReader(s), func(e SSEEvent) error {
			n++
			if strings.Contains(e.Event, "\n") {
				t.Fatalf("event name with newline: %q", e.Event)
			}
			return nil
		})
		if n > strings.Count(s, "\n")+1 {
			t.Fatalf("%d events from %d lines", n, strings.Count(s, "\n")+1)
		}
	})
}

func FuzzArgumentsJSON(f *testing.F) {
	f.Add(`{"a":1}`)
	f.Add(`{"a":`)
	f.Fuzz(func(t *testing.T, s string) {
		out := ArgumentsJSON(s)
		if !strings.HasPrefix(string(out), "{") && !strings.HasPrefix(string(out), `"`) && s != "" && string(out) != s {
			t.Fatalf("unexpected %q for %q", out, s)
		}
	})
}
