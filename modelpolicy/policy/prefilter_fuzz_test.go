package policy

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzScanPrefilter checks that the recognizers' cheap necessary
// conditions never change what Scan finds.
func FuzzScanPrefilter(f *testing.F) {
	for _, s := range []string{"", "hello", "mail bob@example.com", "card 4111 1111 1111 1111", "ssn 123-45-6789",
		"ip 10.0.0.1 and fe80::1", "+1 415-555-0100", "4155550100", "DE89 3704 0044 0532 0130 00", "sk-abcdefghijklmnopqrstuvwx",
		"AKIAABCDEFGHIJKLMNOP", "eyJhbGciOiJI.eyJzdWIiOiIx.abcdefghijklmnopqr", "ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		require.Equal(t, scan(s, false), scan(s, true))
	})
}
