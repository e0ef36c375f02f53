package events

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

func TestResumePoint(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, url, lastEventID string
		want                   int64
		field                  string // "" = valid
	}{
		{"none", "/e", "", 0, ""},
		{"query", "/e?after_sequence=7", "", 7, ""},
		{"header", "/e", " 4 ", 4, ""},
		{"header wins", "/e?after_sequence=7", "3", 3, ""},
		{"bad header", "/e?after_sequence=7", "x", 0, "Last-Event-ID"},
		{"negative header", "/e", "-1", 0, "Last-Event-ID"},
		{"bad query", "/e?after_sequence=abc", "", 0, "after_sequence"},
		{"negative query", "/e?after_sequence=-1", "", 0, "after_sequence"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", c.url, nil)
		if c.lastEventID != "" {
			r.Header.Set("Last-Event-ID", c.lastEventID)
		}
		n, err := ResumePoint(r)
		if c.field == "" {
			require.NoError(t, err, c.name)
			require.Equal(t, c.want, n, c.name)
			continue
		}
		e := errs.As(err)
		require.Equal(t, errs.InvalidRequest, e.Code, c.name)
		require.Equal(t, c.field, e.Details["field"], c.name)
	}
}

func TestWantsJSON(t *testing.T) {
	t.Parallel()
	for accept, want := range map[string]bool{
		"":                                    false,
		"text/event-stream":                   false,
		"application/json":                    true,
		"application/json, text/event-stream": false,
		"text/html, application/json;q=0.9":   true,
	} {
		r := httptest.NewRequest("GET", "/e", nil)
		r.Header.Set("Accept", accept)
		require.Equal(t, want, WantsJSON(r), accept)
	}
}
