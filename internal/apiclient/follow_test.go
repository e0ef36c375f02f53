package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// flakyStream serves a run of total events (the last terminal); each
// connection sends at most perConn events after the client's position
// (Last-Event-ID, else after_sequence) and then drops. It records the
// positions asked for.
type flakyStream struct {
	mu      sync.Mutex
	asked   []string
	total   int
	perConn int
	// repeat re-sends the event before the asked position, as a server
	// is allowed to (the client drops what it saw).
	repeat bool
}

func (s *flakyStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pos := r.Header.Get("Last-Event-ID")
	if pos == "" {
		pos = "q" + r.URL.Query().Get("after_sequence")
	}
	s.mu.Lock()
	s.asked = append(s.asked, pos)
	s.mu.Unlock()
	after, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	if r.Header.Get("Last-Event-ID") == "" {
		after, _ = strconv.Atoi(r.URL.Query().Get("after_sequence"))
	}
	if s.repeat && r.Header.Get("Last-Event-ID") != "" && after > 0 {
		after--
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for seq := after + 1; seq <= s.total && seq <= after+s.perConn; seq++ {
		typ := "agentos.model.delta"
		if seq == s.total {
			typ = store.EventRunCompleted
		}
		b, _ := json.Marshal(map[string]any{"event": map[string]any{"event_id": fmt.Sprint("evt_", seq), "sequence": seq, "type": typ, "payload": map[string]any{}}})
		_, _ = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", seq, typ, b)
	}
}

func TestFollowResumesWithLastEventID(t *testing.T) {
	t.Parallel()
	for _, repeat := range []bool{false, true} {
		s := &flakyStream{total: 7, perConn: 3, repeat: repeat}
		ts := httptest.NewServer(s)
		t.Cleanup(ts.Close)
		c := &Client{BaseURL: ts.URL}
		var seqs []int64
		require.NoError(t, c.StreamEvents(context.Background(), "run_x", 1, func(e store.Event) error {
			seqs = append(seqs, e.Sequence)
			return nil
		}))
		require.Equal(t, []int64{2, 3, 4, 5, 6, 7}, seqs, "repeat=%v", repeat)
		want := []string{"q1", "4"}
		if repeat {
			want = []string{"q1", "4", "6"}
		}
		require.Equal(t, want, s.asked)
	}
}

func TestFollowGivesUp(t *testing.T) {
	t.Parallel()
	// A stream that never brings anything new: bounded retries.
	s := &flakyStream{total: 5, perConn: 0}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	c := &Client{BaseURL: ts.URL, StreamRetries: 2}
	err := c.StreamEvents(context.Background(), "run_x", 0, func(store.Event) error { return nil })
	require.ErrorContains(t, err, "before the terminal event")
	require.Len(t, s.asked, 3)

	// A 404 is final at once.
	nf := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"run run_x not found","retryable":false,"details":{}}}`))
	}))
	t.Cleanup(nf.Close)
	err = (&Client{BaseURL: nf.URL}).StreamEvents(context.Background(), "run_x", 0, func(store.Event) error { return nil })
	require.True(t, errors.Is(err, errs.ErrNotFound), "%v", err)

	// fn's error ends the stream, as it is.
	stop := errors.New("stop")
	s2 := &flakyStream{total: 5, perConn: 5}
	ts2 := httptest.NewServer(s2)
	t.Cleanup(ts2.Close)
	err = (&Client{BaseURL: ts2.URL}).StreamEvents(context.Background(), "run_x", 0, func(store.Event) error { return stop })
	require.Equal(t, stop, err)
}
