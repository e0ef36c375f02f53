package nats

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTokenIsOneLiteralToken(t *testing.T) {
	ids := []string{"ten_01ABC", "a", "a.b", "a.*", "*", ">", "a.>", "a b", "a~2Eb", "a~2eb", "a%2Eb", "a\tb", "ä", "a/b", ".", "~", "a\r\nb", "-_"}
	seen := map[string]string{}
	for _, id := range ids {
		tok := token(id)
		require.NotEmpty(t, tok)
		require.Falsef(t, strings.ContainsAny(tok, ".*> \t\r\n"), "token(%q) = %q", id, tok)
		if prev, ok := seen[tok]; ok {
			t.Fatalf("token(%q) = token(%q) = %q", id, prev, tok)
		}
		seen[tok] = id
		back, ok := untoken(tok)
		require.Truef(t, ok, "untoken(%q)", tok)
		require.Equal(t, id, back, "untoken(token(id)) = id")
	}
	for _, bad := range []string{"", "a~", "a~4", "a~zz", "a~2e"} {
		_, ok := untoken(bad)
		require.Falsef(t, ok, "untoken(%q) is not a token", bad)
	}
	require.Equal(t, "ten_01ABC", token("ten_01ABC"), "plain ids are unchanged")
	require.Equal(t, "a~2Eb", token("a.b"))
	require.Equal(t, "a~7E2Eb", token("a~2Eb"))
}
