package events

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nexixai/agentos/internal/store"
)

// WriteSSE writes one event as an SSE frame:
//
//	id: <sequence>
//	event: <type>
//	data: {"event":{...}}
func WriteSSE(w io.Writer, e store.Event) error {
	data, err := json.Marshal(map[string]any{"event": e})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Sequence, e.Type, data)
	return err
}

// Frame is one parsed SSE frame.
type Frame struct {
	ID    string
	Event string
	Data  string
}

// ReadSSE parses an SSE stream, calling fn for every frame with data
// (comments such as ": ping" are skipped). It stops at EOF or when fn
// returns an error, which it returns.
func ReadSSE(r io.Reader, fn func(Frame) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	var f Frame
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(data) > 0 {
				f.Data = strings.Join(data, "\n")
				if err := fn(f); err != nil {
					return err
				}
			}
			f, data = Frame{}, nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			f.ID = value
		case "event":
			f.Event = value
		case "data":
			data = append(data, value)
		}
	}
	if len(data) > 0 {
		f.Data = strings.Join(data, "\n")
		if err := fn(f); err != nil {
			return err
		}
	}
	return sc.Err()
}

// DecodeFrame returns the event carried by a frame ({"event":{...}} or a
// bare envelope), checking that id and event agree with it.
func DecodeFrame(f Frame) (store.Event, error) {
	var wrap struct {
		Event *store.Event `json:"event"`
	}
	if err := json.Unmarshal([]byte(f.Data), &wrap); err != nil {
		return store.Event{}, fmt.Errorf("sse data: %w", err)
	}
	var e store.Event
	if wrap.Event != nil {
		e = *wrap.Event
	} else if err := json.Unmarshal([]byte(f.Data), &e); err != nil {
		return store.Event{}, fmt.Errorf("sse data: %w", err)
	}
	if f.ID != "" {
		if id, err := strconv.ParseInt(f.ID, 10, 64); err != nil || id != e.Sequence {
			return e, fmt.Errorf("sse id %q does not match sequence %d", f.ID, e.Sequence)
		}
	}
	if f.Event != "" && f.Event != e.Type {
		return e, fmt.Errorf("sse event %q does not match type %q", f.Event, e.Type)
	}
	return e, nil
}
