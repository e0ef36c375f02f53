package federation

import "github.com/nexixai/agentos/internal/events"

// Frame is one SSE frame of a proxied stream (events.Frame): an event (ID,
// Event, Data) or, when Comment is set, a comment line such as ": ping".
type Frame = events.Frame

// ParseSSE parses a whole stream into frames, comments included (it is
// events.ParseSSE, kept here for the callers of this package).
func ParseSSE(b []byte) ([]Frame, error) { return events.ParseSSE(b) }
