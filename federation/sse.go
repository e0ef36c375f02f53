package federation

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxSSELine bounds one line of an SSE stream read from a peer.
const maxSSELine = 4 << 20

// Frame is one SSE frame: an event (ID, Event, Data) or, when Comment is
// set, a comment line such as ": ping".
type Frame struct {
	ID      string
	Event   string
	Data    string
	Comment bool
}

// SSEReader reads frames from a text/event-stream body.
type SSEReader struct {
	br *bufio.Reader
}

// NewSSEReader returns a reader of r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{br: bufio.NewReaderSize(r, 64<<10)}
}

func (s *SSEReader) line() (string, error) {
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
		if len(buf) > maxSSELine {
			return "", fmt.Errorf("sse: line longer than %d bytes", maxSSELine)
		}
		if !isPrefix {
			return string(buf), nil
		}
	}
}

// Next returns the next frame. A comment line is returned on its own as a
// Comment frame. io.EOF at the end of the stream (an unterminated last
// frame is returned first).
func (s *SSEReader) Next() (Frame, error) {
	var f Frame
	var data []string
	seen := false
	for {
		ln, err := s.line()
		if err != nil {
			if errors.Is(err, io.EOF) && seen {
				f.Data = strings.Join(data, "\n")
				return f, nil
			}
			return Frame{}, err
		}
		if ln == "" {
			if !seen {
				continue
			}
			f.Data = strings.Join(data, "\n")
			return f, nil
		}
		if strings.HasPrefix(ln, ":") {
			if !seen {
				return Frame{Comment: true, Data: strings.TrimSpace(ln[1:])}, nil
			}
			continue
		}
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
	r := NewSSEReader(bytes.NewReader(b))
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

// writeFrame writes an event frame; multi-line data is split into several
// data lines as the format requires.
func writeFrame(w io.Writer, f Frame) error {
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
