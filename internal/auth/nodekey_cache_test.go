package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMintCacheReusesUntilHalfLife(t *testing.T) {
	t.Parallel()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s := NewNodeSigner(priv)
	now := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return now }
	c := s.NewMintCache("model-policy", 4*time.Minute)
	ac := Context{TenantID: "tnt_a", Principal: Principal{PrincipalID: "usr_a"}, Scopes: []string{ScopeModelsInvoke}}
	a, err := c.Token(ac)
	require.NoError(t, err)
	b, err := c.Token(ac)
	require.NoError(t, err)
	require.Equal(t, a, b, "reused within half its lifetime")
	other, err := c.Token(Context{TenantID: "tnt_b", Principal: Principal{PrincipalID: "usr_a"}, Scopes: []string{ScopeModelsInvoke}})
	require.NoError(t, err)
	require.NotEqual(t, a, other, "one token per tenant and principal")
	now = now.Add(2 * time.Minute)
	d, err := c.Token(ac)
	require.NoError(t, err)
	require.NotEqual(t, a, d, "renewed after half its lifetime")
}
