package events

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

func TestSSERoundTrip(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	want := []store.Event{
		{EventID: "evt_1", Sequence: 1, Type: store.EventRunCreated, TenantID: "tnt_a", RunID: "run_1", Time: time.Unix(0, 0).UTC(), Payload: json.RawMessage(`{"status":"queued"}`)},
		{EventID: "evt_2", Sequence: 2, Type: store.EventRunCompleted, TenantID: "tnt_a", RunID: "run_1", Time: time.Unix(1, 0).UTC(), Payload: json.RawMessage(`{"status":"completed"}`)},
	}
	for _, e := range want {
		require.NoError(t, WriteSSE(&buf, e))
		buf.WriteString(": ping\n\n")
	}
	var got []store.Event
	require.NoError(t, ReadSSE(&buf, func(f Frame) error {
		e, err := DecodeFrame(f)
		require.NoError(t, err)
		got = append(got, e)
		return nil
	}))
	require.Equal(t, want, got)
}

func TestDecodeFrameRejectsMismatch(t *testing.T) {
	t.Parallel()
	_, err := DecodeFrame(Frame{ID: "2", Event: "x", Data: `{"event":{"sequence":1,"type":"x"}}`})
	require.Error(t, err)
	_, err = DecodeFrame(Frame{ID: "1", Event: "y", Data: `{"event":{"sequence":1,"type":"x"}}`})
	require.Error(t, err)
}

func TestHubLagAndClose(t *testing.T) {
	t.Parallel()
	h := NewHub()
	s := h.Subscribe("tnt_a", "run_1")
	other := h.Subscribe("tnt_b", "run_1")
	for i := 0; i < 300; i++ {
		h.Publish(store.Event{TenantID: "tnt_a", RunID: "run_1", Sequence: int64(i + 1)})
	}
	require.Len(t, s.C, 256)
	require.True(t, s.Lagged())
	require.False(t, s.Lagged())
	require.Len(t, other.C, 0, "events never cross tenants")
	s.Close()
	other.Close()
	require.Equal(t, 0, h.Subscribers())
}

func FuzzReadSSE(f *testing.F) {
	f.Add("id: 1\nevent: x\ndata: {\"event\":{\"sequence\":1,\"type\":\"x\"}}\n\n")
	f.Add(": ping\n\ndata: a\ndata: b\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		_ = ReadSSE(strings.NewReader(s), func(fr Frame) error {
			_, _ = DecodeFrame(fr)
			return nil
		})
	})
}
