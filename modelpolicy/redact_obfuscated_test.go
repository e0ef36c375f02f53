package modelpolicy

import (
	"encoding/json"
	"testing"

	"github.com/nexixai/agentos/modelpolicy/policy"
	"github.com/stretchr/testify/require"
)

// TestRedactJSONObfuscated: tool arguments and results are redacted value
// by value after JSON decoding, so an address hidden with JSON escapes for
// a zero-width space and a full-width '@', or a card in full-width digits,
// is still redacted, and the rest of the document is kept.
func TestRedactJSONObfuscated(t *testing.T) {
	t.Parallel()
	p := policy.DefaultPolicies()["pol_default"]
	require.NoError(t, p.Compile())
	o := policy.NewOutcome()
	raw := json.RawMessage(`{"to":"ja\u200bne\uff20example (dot) com","card":"\uff14111 1111 1111 1111","order":"Order #1234567890","when":"2024-03-18 10:30"}`)
	out := redactJSON(p, policy.StageInput, raw, o)
	var got map[string]string
	require.NoError(t, json.Unmarshal(out, &got))
	require.Equal(t, map[string]string{"to": "[REDACTED:email]", "card": "[REDACTED:credit_card]",
		"order": "Order #1234567890", "when": "2024-03-18 10:30"}, got)
	require.Equal(t, map[string]int{policy.TypeEmail: 1, policy.TypeCreditCard: 1}, o.Redactions)
}
