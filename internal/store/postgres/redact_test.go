package postgres

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	require.Equal(t, "postgres://u:xxxxx@h:5432/db", redact("postgres://u:pw@h:5432/db"))
	require.Equal(t, "postgres://u@h/db", redact("postgres://u@h/db"))
	require.Equal(t, "postgres://h/db", redact("postgres://h/db"))
	require.Equal(t, "not a url", redact("not a url"))
}

// FuzzRedact: a password in the user info never survives redaction, and
// anything else is left alone.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{"pw", "p@ss", "s3cr:et", ""} {
		f.Add("u", s, "h:5432/db")
	}
	f.Fuzz(func(t *testing.T, user, pass, rest string) {
		if pass == "" || strings.ContainsAny(user, ":@") || strings.Contains(rest, "@") || strings.Contains(user+pass+rest, "://") {
			return
		}
		got := redact("postgres://" + user + ":" + pass + "@" + rest)
		require.Equal(t, "postgres://"+user+":xxxxx@"+rest, got)
		require.Equal(t, "x", redact("x"))
	})
}
