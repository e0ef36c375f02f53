package identity

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

type memReplay struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (m *memReplay) UseJTI(_ context.Context, jti string, _ time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen = map[string]bool{}
	}
	if m.seen[jti] {
		return false, nil
	}
	m.seen[jti] = true
	return true, nil
}

type bundle struct {
	a, b     *Signer
	verifier *Verifier
}

func setup(t *testing.T) bundle {
	t.Helper()
	ka, err := GenerateKey()
	require.NoError(t, err)
	kb, err := GenerateKey()
	require.NoError(t, err)
	a := NewSigner("stk_a", ka)
	b := NewSigner("stk_b", kb)
	v := &Verifier{Self: "stk_b", Replay: &memReplay{}, Keys: func(id string) (ed25519.PublicKey, bool) {
		if id == "stk_a" {
			return a.PublicKey(), true
		}
		return nil, false
	}}
	return bundle{a: a, b: b, verifier: v}
}

func claims(aud string) Claims {
	return Claims{Audience: aud, TenantID: "tnt_x", Subject: "usr_1", PrincipalType: "user", Scopes: []string{"runs:forward"}}
}

func reason(t *testing.T, err error) string {
	t.Helper()
	require.Error(t, err)
	require.True(t, errs.CodeOf(err) == errs.Unauthorized, "code %s", errs.CodeOf(err))
	return errs.As(err).Details["reason"].(string)
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok, err := b.a.Sign(claims("stk_b"), time.Minute)
	require.NoError(t, err)
	c, err := b.verifier.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.Equal(t, "stk_a", c.Issuer)
	require.Equal(t, "tnt_x", c.TenantID)
	require.Equal(t, "usr_1", c.Subject)
	require.Equal(t, []string{"runs:forward"}, c.Scopes)
	require.True(t, c.HasScope("runs:forward"))
	require.False(t, c.HasScope("admin"))
	require.NotEmpty(t, c.JTI)
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		token  func(b bundle) string
		reason string
	}{
		{"unknown issuer", func(b bundle) string {
			tok, _ := b.b.Sign(claims("stk_b"), time.Minute)
			return tok
		}, "unknown_issuer"},
		{"wrong audience", func(b bundle) string {
			tok, _ := b.a.Sign(claims("stk_c"), time.Minute)
			return tok
		}, "wrong_audience"},
		{"expired", func(b bundle) string {
			s := NewSigner("stk_a", b.a.key)
			s.SetClock(func() time.Time { return time.Now().Add(-10 * time.Minute) })
			tok, _ := s.Sign(claims("stk_b"), time.Minute)
			return tok
		}, "expired"},
		{"forged signature", func(b bundle) string {
			// signed by b's key but claiming to be a
			s := NewSigner("stk_a", b.b.key)
			tok, _ := s.Sign(claims("stk_b"), time.Minute)
			return tok
		}, "bad_signature"},
		{"too long", func(b bundle) string {
			now := time.Now()
			wc := wireClaims{TenantID: "tnt_x", RegisteredClaims: jwt.RegisteredClaims{Issuer: "stk_a", Subject: "u",
				Audience: jwt.ClaimStrings{"stk_b"}, ID: "j1", IssuedAt: jwt.NewNumericDate(now),
				ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}
			tok, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, wc).SignedString(b.a.key)
			return tok
		}, "ttl_too_long"},
		{"hs256 confusion", func(b bundle) string {
			wc := wireClaims{TenantID: "tnt_x", RegisteredClaims: jwt.RegisteredClaims{Issuer: "stk_a", Subject: "u",
				Audience: jwt.ClaimStrings{"stk_b"}, ID: "j1", IssuedAt: jwt.NewNumericDate(time.Now()),
				ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}}
			tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, wc).SignedString([]byte(b.a.PublicKey()))
			return tok
		}, "bad_algorithm"},
		{"alg none", func(b bundle) string {
			wc := wireClaims{TenantID: "tnt_x", RegisteredClaims: jwt.RegisteredClaims{Issuer: "stk_a", Subject: "u",
				Audience: jwt.ClaimStrings{"stk_b"}, ID: "j1"}}
			tok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, wc).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return tok
		}, "bad_algorithm"},
		{"garbage", func(bundle) string { return "not.a.jwt" }, "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			_, err := b.verifier.Verify(context.Background(), tc.token(b))
			require.Equal(t, tc.reason, reason(t, err))
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok, err := b.a.Sign(claims("stk_b"), time.Minute)
	require.NoError(t, err)
	_, err = b.verifier.Verify(context.Background(), tok)
	require.NoError(t, err)
	_, err = b.verifier.Verify(context.Background(), tok)
	require.Equal(t, "replayed", reason(t, err))
}

// A token presented with another stack's certificate is refused without
// using it up: its real issuer can still use it.
func TestVerifyFromIssuerMismatchKeepsTheToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok, err := b.a.Sign(claims("stk_b"), time.Minute)
	require.NoError(t, err)
	_, err = b.verifier.VerifyFrom(context.Background(), tok, "stk_c")
	require.Equal(t, "issuer_certificate_mismatch", reason(t, err))
	c, err := b.verifier.VerifyFrom(context.Background(), tok, "stk_a")
	require.NoError(t, err)
	require.Equal(t, "stk_a", c.Issuer)
}

func TestSignCapsTTL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok, err := b.a.Sign(claims("stk_b"), time.Hour)
	require.NoError(t, err)
	c, err := b.verifier.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.LessOrEqual(t, c.ExpiresAt.Sub(c.IssuedAt), MaxTTL)
	_, err = b.a.Sign(Claims{Audience: "stk_b"}, 0)
	require.Error(t, err)
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fed", "signing.key")
	_, err := LoadOrCreateKey(path, false)
	require.Error(t, err)
	k1, err := LoadOrCreateKey(path, true)
	require.NoError(t, err)
	k2, err := LoadOrCreateKey(path, false)
	require.NoError(t, err)
	require.True(t, k1.Equal(k2))

	text := EncodePublicKey(k1.Public().(ed25519.PublicKey))
	require.True(t, strings.HasPrefix(text, PublicKeyPrefix))
	pub, err := ParsePublicKey(text)
	require.NoError(t, err)
	require.True(t, pub.Equal(k1.Public()))
	_, err = ParsePublicKey("ed25519:AAAA")
	require.Error(t, err)
	_, err = ParsePublicKey("%%%")
	require.Error(t, err)
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add("ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	f.Add("")
	f.Add("ed25519:")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePublicKey(s)
		if err == nil && len(k) != ed25519.PublicKeySize {
			t.Fatalf("accepted a key of %d bytes", len(k))
		}
	})
}

func FuzzVerify(f *testing.F) {
	ka, _ := GenerateKey()
	s := NewSigner("stk_a", ka)
	tok, _ := s.Sign(claims("stk_b"), time.Minute)
	f.Add(tok)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		v := &Verifier{Self: "stk_b", Replay: &memReplay{}, Keys: func(id string) (ed25519.PublicKey, bool) {
			return s.PublicKey(), id == "stk_a"
		}}
		c, err := v.Verify(context.Background(), token)
		if err == nil && (c.Issuer != "stk_a" || c.Audience != "stk_b" || c.TenantID == "" || c.JTI == "") {
			t.Fatalf("accepted incomplete claims %+v", c)
		}
		if err != nil && errs.CodeOf(err) != errs.Unauthorized {
			t.Fatalf("unexpected code %s", errs.CodeOf(err))
		}
	})
}
