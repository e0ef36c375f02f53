package conformance

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/nexixai/agentos/internal/store"
)

// SSEFrame is one dispatched server-sent event: the fields of the lines
// before a blank line. Comment lines (": ping") are not frames.
type SSEFrame struct {
	ID    string // last "id:" value, "" if none
	HasID bool   // whether an "id:" line was present
	Event string // "event:" value, "" if none
	Data  string // "data:" lines joined with "\n"
	Retry string // "retry:" value, "" if none
	Line  int    // 1-based line number where the frame starts
}

// ParseSSE parses a text/event-stream body (WHATWG HTML §9.2.6): lines end
// in LF, CRLF or CR; a line starting with ':' is a comment; "field: value"
// loses one leading space; a blank line ends a frame. Unlike a browser it
// is strict about what AgentOS must emit: an unknown field name, a frame
// without data, or a last frame not ended by a blank line is an error.
func ParseSSE(body []byte) ([]SSEFrame, error) {
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	text = strings.TrimPrefix(text, "\uFEFF")
	lines := strings.Split(text, "\n")
	// A body ending in "\n" yields a final empty element that is not a line.
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	} else {
		return nil, fmt.Errorf("sse: line %d: stream does not end with a newline", len(lines))
	}
	var (
		frames []SSEFrame
		cur    SSEFrame
		open   bool
		data   []string
	)
	for i, line := range lines {
		n := i + 1
		if line == "" {
			if open {
				if data == nil {
					return nil, fmt.Errorf("sse: frame at line %d has no data line", cur.Line)
				}
				cur.Data = strings.Join(data, "\n")
				frames = append(frames, cur)
			}
			cur, open, data = SSEFrame{}, false, nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		if !open {
			cur, open = SSEFrame{Line: n}, true
		}
		switch field {
		case "id":
			if strings.ContainsRune(value, 0) {
				return nil, fmt.Errorf("sse: line %d: id contains NUL", n)
			}
			cur.ID, cur.HasID = value, true
		case "event":
			cur.Event = value
		case "data":
			data = append(data, value)
		case "retry":
			cur.Retry = value
		default:
			return nil, fmt.Errorf("sse: line %d: unknown field %q", n, field)
		}
	}
	if open {
		return nil, fmt.Errorf("sse: frame at line %d is not terminated by a blank line", cur.Line)
	}
	return frames, nil
}

// sseDataSchema is the schema each frame's data must match: the component
// SSEEventData if the spec has one, else EventEnvelope (the seed's name
// for the same {"event": Event} wrapper), else Event.
func (s *Spec) sseDataSchema() (*openapi3.Schema, string, error) {
	for _, name := range []string{"SSEEventData", "EventEnvelope", "Event"} {
		if ref, ok := s.Doc.Components.Schemas[name]; ok && ref.Value != nil {
			return ref.Value, name, nil
		}
	}
	return nil, "", fmt.Errorf("spec %s has neither an SSEEventData nor an Event component schema", s.Service)
}

// CheckSSE parses an event stream of one run and checks every frame: data
// is JSON matching the spec's SSEEventData schema ({"event": Event}), id is
// the event's sequence as a decimal integer, event equals the event's type,
// sequences increase by exactly one (no gaps, no duplicates), all events
// belong to one tenant and run, and nothing follows a terminal event. When
// req resumes (Last-Event-ID header or after_sequence query), the first
// sequence must be greater than the resume point. req may be nil.
// It returns the decoded events in stream order.
func (s *Spec) CheckSSE(req *http.Request, body []byte) ([]store.Event, error) {
	frames, err := ParseSSE(body)
	if err != nil {
		return nil, err
	}
	schema, schemaName, err := s.sseDataSchema()
	if err != nil {
		return nil, err
	}
	after, err := resumePoint(req)
	if err != nil {
		return nil, err
	}
	var (
		problems []string
		events   []store.Event
	)
	bad := func(f SSEFrame, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("frame at line %d: %s", f.Line, fmt.Sprintf(format, args...)))
	}
	for _, f := range frames {
		var raw any
		if err := json.Unmarshal([]byte(f.Data), &raw); err != nil {
			bad(f, "data is not JSON: %v", err)
			continue
		}
		if err := schema.VisitJSON(raw, openapi3.MultiErrors(), openapi3.VisitAsResponse()); err != nil {
			bad(f, "data does not match %s: %s", schemaName, readableError(err))
			continue
		}
		var ev store.Event
		if schemaName == "SSEEventData" || schemaName == "EventEnvelope" {
			var wrap struct {
				Event *store.Event `json:"event"`
			}
			if err := json.Unmarshal([]byte(f.Data), &wrap); err != nil || wrap.Event == nil {
				bad(f, `data is not {"event": {...}}: %v`, err)
				continue
			}
			ev = *wrap.Event
		} else if err := json.Unmarshal([]byte(f.Data), &ev); err != nil {
			bad(f, "data is not an event: %v", err)
			continue
		}
		if !f.HasID {
			bad(f, "no id: line")
		} else if id, err := strconv.ParseInt(f.ID, 10, 64); err != nil || id != ev.Sequence {
			bad(f, "id %q is not the event's sequence %d", f.ID, ev.Sequence)
		}
		if f.Event != ev.Type {
			bad(f, "event: %q differs from the event's type %q", f.Event, ev.Type)
		}
		if len(events) == 0 {
			if ev.Sequence <= after {
				bad(f, "first sequence %d is not after the resume point %d", ev.Sequence, after)
			}
		} else {
			prev := events[len(events)-1]
			if ev.Sequence != prev.Sequence+1 {
				bad(f, "sequence %d follows %d (gap or duplicate)", ev.Sequence, prev.Sequence)
			}
			if ev.RunID != prev.RunID || ev.TenantID != prev.TenantID {
				bad(f, "event of run %s/%s in a stream of run %s/%s", ev.TenantID, ev.RunID, prev.TenantID, prev.RunID)
			}
			if store.IsTerminalEvent(prev.Type) {
				bad(f, "event %s follows the terminal event %s", ev.Type, prev.Type)
			}
		}
		events = append(events, ev)
	}
	if len(problems) > 0 {
		return events, errors.New("sse: " + strings.Join(problems, "\n  "))
	}
	return events, nil
}

// sseDataSchemaName is the x-sse-data-schema extension of a
// text/event-stream media type: the component schema each frame's data
// matches in a stream that is not a run's event stream (the /mcp
// endpoint's JSON-RPC messages). "" when unset.
func sseDataSchemaName(media *openapi3.MediaType) string {
	if media == nil {
		return ""
	}
	name, _ := media.Extensions["x-sse-data-schema"].(string)
	return name
}

// CheckSSEData parses an event stream whose frames are not run events and
// checks that each frame's data is JSON matching the component schema
// schemaName.
func (s *Spec) CheckSSEData(body []byte, schemaName string) error {
	frames, err := ParseSSE(body)
	if err != nil {
		return err
	}
	ref, ok := s.Doc.Components.Schemas[schemaName]
	if !ok || ref.Value == nil {
		return fmt.Errorf("x-sse-data-schema names %q, which is not a component schema", schemaName)
	}
	var problems []string
	for _, f := range frames {
		var raw any
		if err := json.Unmarshal([]byte(f.Data), &raw); err != nil {
			problems = append(problems, fmt.Sprintf("frame at line %d: data is not JSON: %v", f.Line, err))
			continue
		}
		if err := ref.Value.VisitJSON(raw, openapi3.MultiErrors(), openapi3.VisitAsResponse()); err != nil {
			problems = append(problems, fmt.Sprintf("frame at line %d: data does not match %s: %s", f.Line, schemaName, readableError(err)))
		}
	}
	if len(problems) > 0 {
		return errors.New("sse: " + strings.Join(problems, "\n  "))
	}
	return nil
}

// ValidateSSE is CheckSSE reporting failures with t.Errorf. It returns the
// events it could decode.
func (s *Spec) ValidateSSE(t testing.TB, req *http.Request, body []byte) []store.Event {
	t.Helper()
	events, err := s.CheckSSE(req, body)
	if err != nil {
		t.Errorf("conformance (%s): %v\nstream: %s", s.Service, err, truncate(body, 4000))
	}
	return events
}

// resumePoint is the sequence a request resumes after: Last-Event-ID
// wins over after_sequence (a reconnecting browser keeps the original
// URL); 0 when neither is set.
func resumePoint(req *http.Request) (int64, error) {
	if req == nil {
		return 0, nil
	}
	v := strings.TrimSpace(req.Header.Get("Last-Event-ID"))
	if v == "" {
		v = req.URL.Query().Get("after_sequence")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sse: request resume point %q is not an integer", v)
	}
	return n, nil
}
