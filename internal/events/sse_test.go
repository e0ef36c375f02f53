package events

import (
	"bytes"
	"encoding/json"
	"errors"
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
	require.Len(t, s.C, SubscriberBuffer)
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

func TestReadSSEFrames(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		want []Frame
	}{
		{"one event", "id: 1\nevent: a\ndata: {\"x\":1}\n\n", []Frame{{ID: "1", Event: "a", Data: `{"x":1}`}}},
		{"comments and heartbeats skipped", ": ping\n\n: ping\nid: 2\ndata: x\n\n", []Frame{{ID: "2", Data: "x"}}},
		{"multi-line data", "data: a\ndata: b\n\n", []Frame{{Data: "a\nb"}}},
		{"no space after colon", "id:3\ndata:y\n\n", []Frame{{ID: "3", Data: "y"}}},
		{"crlf", "id: 4\r\ndata: z\r\n\r\n", []Frame{{ID: "4", Data: "z"}}},
		{"unterminated last frame", "data: z", []Frame{{Data: "z"}}},
		{"empty data line counts", "data:\n\n", []Frame{{}}},
		{"frame without data skipped", "id: 5\nretry: 10\n\ndata: w\n\n", []Frame{{Data: "w"}}},
		{"empty", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []Frame
			require.NoError(t, ReadSSE(strings.NewReader(tc.in), func(f Frame) error { got = append(got, f); return nil }))
			require.Equal(t, tc.want, got)
		})
	}
}

func TestReadSSEStopsOnError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	n := 0
	err := ReadSSE(strings.NewReader("data: 1\n\ndata: 2\n\n"), func(Frame) error { n++; return boom })
	require.ErrorIs(t, err, boom)
	require.Equal(t, 1, n)
}

func TestReaderFrames(t *testing.T) {
	t.Parallel()
	frames, err := ParseSSE([]byte(": hi\n\nid: 1\n: inside\nevent: e\ndata: a\ndata: b\n\n\n\nid: 2\n\n:ping\n\nid: 3\ndata: tail"))
	require.NoError(t, err)
	require.Equal(t, []Frame{
		{Comment: true, Data: "hi"},
		{ID: "1", Event: "e", Data: "a\nb"},
		{ID: "2"},
		{Comment: true, Data: "ping"},
		{ID: "3", Data: "tail"},
	}, frames)

	rd := NewReader(strings.NewReader("data: " + strings.Repeat("x", 100) + "\n\n"))
	rd.MaxFrame = 50
	_, err = rd.Next()
	require.ErrorContains(t, err, "frame longer than 50 bytes")
	// Many short lines add up: a frame never ends without a blank line.
	rd = NewReader(strings.NewReader(strings.Repeat("data: xxxxxxxx\n", 20) + "\n"))
	rd.MaxFrame = 100
	_, err = rd.Next()
	require.ErrorContains(t, err, "frame longer than 100 bytes")
	rd = NewReader(strings.NewReader(strings.Repeat("data: xxxxxxxx\n", 5) + "\ndata: y\n\n"))
	rd.MaxFrame = 100
	f, err := rd.Next()
	require.NoError(t, err)
	require.Len(t, strings.Split(f.Data, "\n"), 5)
	f, err = rd.Next()
	require.NoError(t, err, "the bound is per frame")
	require.Equal(t, "y", f.Data)
}

func TestWriteFrame(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, WriteFrame(&buf, Frame{ID: "1\n2", Event: "e\r", Data: "a\nb"}))
	require.NoError(t, WriteFrame(&buf, Frame{Comment: true, Data: "ping"}))
	require.Equal(t, "id: 12\nevent: e\ndata: a\ndata: b\n\n: ping\n\n", buf.String())
	frames, err := ParseSSE(buf.Bytes())
	require.NoError(t, err)
	require.Equal(t, []Frame{{ID: "12", Event: "e", Data: "a\nb"}, {Comment: true, Data: "ping"}}, frames)
}

func TestDecodeData(t *testing.T) {
	t.Parallel()
	ev, err := DecodeData(`{"event":{"event_id":"evt_1","sequence":3,"type":"agentos.run.completed"}}`)
	require.NoError(t, err)
	require.Equal(t, int64(3), ev.Sequence)
	ev, err = DecodeData(`{"event_id":"evt_2","sequence":4,"type":"x"}`)
	require.NoError(t, err)
	require.Equal(t, "evt_2", ev.EventID)
	_, err = DecodeData(`not json`)
	require.Error(t, err)
}

// Every frame ParseSSE returns can be written back (fields never carry a
// newline) and parses again to as many frames.
func FuzzParseSSE(f *testing.F) {
	f.Add([]byte("id: 1\nevent: agentos.run.created\ndata: {\"event\":{}}\n\n: ping\n\n"))
	f.Add([]byte("data: a\ndata: b\r\n\r\n"))
	f.Add([]byte(":\n\nid"))
	f.Add([]byte("id: 1\nevent: a\ndata: {\"event\":{}}\n\n"))
	f.Add([]byte(": ping\n\ndata:\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, err := ParseSSE(b)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		for _, fr := range frames {
			if !fr.Comment && strings.ContainsAny(fr.ID+fr.Event, "\n") {
				t.Fatalf("field with newline: %q", fr.ID)
			}
			require.NoError(t, WriteFrame(&buf, fr))
			_, _ = DecodeData(fr.Data)
		}
		again, err := ParseSSE(buf.Bytes())
		require.NoError(t, err)
		require.Len(t, again, len(frames))
	})
}
