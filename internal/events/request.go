package events

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/nexixai/agentos/internal/errs"
)

// ResumePoint reads where a client resumes a run's event stream: the
// Last-Event-ID header (what a reconnecting EventSource sends), else
// ?after_sequence=N, else 0. Last-Event-ID wins. A value that is not a
// non-negative integer is an invalid_request naming the field it came from.
func ResumePoint(r *http.Request) (int64, error) {
	if v := strings.TrimSpace(r.Header.Get("Last-Event-ID")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, errs.Field("Last-Event-ID", "must be a non-negative integer sequence, got %q", v)
		}
		return n, nil
	}
	if v := r.URL.Query().Get("after_sequence"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, errs.Field("after_sequence", "must be a non-negative integer, got %q", v)
		}
		return n, nil
	}
	return 0, nil
}

// WantsJSON reports whether the client asked for a JSON page of events
// (Accept names application/json and not text/event-stream) instead of SSE.
func WantsJSON(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/event-stream")
}
