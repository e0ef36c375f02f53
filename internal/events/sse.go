package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/store"
)

// WriteSSE writes one event as an SSE frame:
//
//	id: <sequence>
//	event: <type>
//	data: {"event":{...}}
func WriteSSE(w io.Writer, e store.Event) error {
	data, err := json.Marshal(eventData{Event: e})
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(data)+len(e.Type)+40)
	buf = append(buf, "id: "...)
	buf = strconv.AppendInt(buf, e.Sequence, 10)
	buf = append(buf, "\nevent: "...)
	buf = append(buf, e.Type...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	_, err = w.Write(buf)
	return err
}

// eventData is an SSE frame's data: {"event": <envelope>}.
type eventData struct {
	Event store.Event `json:"event"`
}

// WriteTimeout bounds one write (and flush) of an SSE stream, set with
// http.ResponseController.SetWriteDeadline before each: a client that
// keeps its connection open but reads nothing for that long is dropped
// (it can resume with Last-Event-ID) instead of pinning its handler, and
// the server's shutdown, forever.
const WriteTimeout = 30 * time.Second

// WriteFrame writes f as an SSE frame: a comment (": <Data>") when f.Comment
// is set, else its id and event lines (newlines removed) and one data line
// per line of Data, as the format requires.
func WriteFrame(w io.Writer, f Frame) error {
	var b strings.Builder
	if f.Comment {
		b.WriteString(": " + f.Data + "\n\n")
	} else {
		if f.ID != "" {
			b.WriteString("id: " + sanitizeField(f.ID) + "\n")
		}
		if f.Event != "" {
			b.WriteString("event: " + sanitizeField(f.Event) + "\n")
		}
		for _, l := range strings.Split(f.Data, "\n") {
			b.WriteString("data: " + l + "\n")
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sanitizeField(s string) string {
	return strings.NewReplacer("\r", "", "\n", "").Replace(s)
}

// Frame is one parsed SSE frame: an event (ID, Event, Data with its data
// lines joined by "\n") or, when Comment is set, a comment line such as
// ": ping" (its text, trimmed, in Data).
type Frame struct {
	ID      string
	Event   string
	Data    string
	Comment bool
}

// MaxFrameBytes is the default bound on one frame of a stream read by
// Reader (its lines together).
const MaxFrameBytes = 4 << 20

// Reader reads frames from a text/event-stream body, one at a time; it is
// the one SSE parser of the node (orchestrator tests, federation proxy, CLI).
// Lines end with "\n" or "\r\n"; a field is "name: value" or "name:value";
// unknown fields are ignored.
type Reader struct {
	br *bufio.Reader
	// MaxFrame bounds one frame, all its lines together (default
	// MaxFrameBytes): a longer one is an error, so a peer cannot grow a
	// frame without end.
	MaxFrame int
}

// NewReader returns a reader of r.
func NewReader(r io.Reader) *Reader {
	// A small buffer: every proxied stream has one (64 KB each would be
	// 320 MB for 5,000 streams); longer lines are assembled by line.
	return &Reader{br: bufio.NewReaderSize(r, 4<<10), MaxFrame: MaxFrameBytes}
}

// line reads one line of at most max bytes.
func (s *Reader) line(max int) (string, error) {
	var buf []byte
	for {
		chunk, isPrefix, err := s.br.ReadLine()
		if err != nil {
			if len(buf) > 0 && errors.Is(err, io.EOF) {
				return string(buf), nil
			}
			return "", err
		}
		buf = append(buf, chunk...)
		if len(buf) > max {
			return "", fmt.Errorf("sse: frame longer than %d bytes", s.MaxFrame)
		}
		if !isPrefix {
			return string(buf), nil
		}
	}
}

// Next returns the next frame. A comment line between frames is returned on
// its own as a Comment frame (inside a frame it is skipped). It returns
// io.EOF at the end of the stream; an unterminated last frame is returned
// first.
func (s *Reader) Next() (Frame, error) {
	f, _, err := s.next()
	return f, err
}

// next is Next, also counting the frame's data lines ("data:" is one empty
// line, which a frame without data lines does not have).
func (s *Reader) next() (Frame, int, error) {
	var f Frame
	var data []string
	seen := false
	left := s.MaxFrame
	for {
		ln, err := s.line(left)
		if err != nil {
			if errors.Is(err, io.EOF) && seen {
				f.Data = strings.Join(data, "\n")
				return f, len(data), nil
			}
			return Frame{}, 0, err
		}
		if ln == "" {
			if !seen {
				continue
			}
			f.Data = strings.Join(data, "\n")
			return f, len(data), nil
		}
		if strings.HasPrefix(ln, ":") {
			if !seen {
				return Frame{Comment: true, Data: strings.TrimSpace(ln[1:])}, 0, nil
			}
			continue
		}
		left -= len(ln) + 1
		field, value, _ := strings.Cut(ln, ":")
		value = strings.TrimPrefix(value, " ")
		seen = true
		switch field {
		case "id":
			f.ID = value
		case "event":
			f.Event = value
		case "data":
			data = append(data, value)
		}
	}
}

// ParseSSE parses a whole stream into frames (comments included).
func ParseSSE(b []byte) ([]Frame, error) {
	r := NewReader(bytes.NewReader(b))
	var out []Frame
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

// ReadSSE parses an SSE stream, calling fn for every frame with data
// (comments such as ": ping", and frames without a data line, are skipped).
// It stops at EOF (returning nil) or when fn or the stream returns an
// error, which it returns.
func ReadSSE(r io.Reader, fn func(Frame) error) error {
	rd := NewReader(r)
	for {
		f, lines, err := rd.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if f.Comment || lines == 0 {
			continue
		}
		if err := fn(f); err != nil {
			return err
		}
	}
}

// DecodeData returns the event carried by SSE data: {"event":{...}} or a
// bare envelope.
func DecodeData(data string) (store.Event, error) {
	var wrap struct {
		Event *store.Event `json:"event"`
	}
	if err := json.Unmarshal([]byte(data), &wrap); err != nil {
		return store.Event{}, fmt.Errorf("sse data: %w", err)
	}
	if wrap.Event != nil {
		return *wrap.Event, nil
	}
	var e store.Event
	if err := json.Unmarshal([]byte(data), &e); err != nil {
		return store.Event{}, fmt.Errorf("sse data: %w", err)
	}
	return e, nil
}

// DecodeFrame returns the event carried by a frame (see DecodeData),
// checking that id and event agree with it.
func DecodeFrame(f Frame) (store.Event, error) {
	e, err := DecodeData(f.Data)
	if err != nil {
		return e, err
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
