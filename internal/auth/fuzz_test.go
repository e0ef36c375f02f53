package auth

import (
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

// FuzzAuthenticateJWT feeds arbitrary bearer credentials to a prod-mode
// Authenticator trusting RSA, ECDSA, Ed25519 and HS256 issuers. It must
// never panic, must fail with a contract error, and may only succeed for
// claims that a trusted key really signed.
func FuzzAuthenticateJWT(f *testing.F) {
	testKeys(f)
	f.Add(sign(f, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example")))
	f.Add(sign(f, jwt.SigningMethodEdDSA, edKey, "e1", claims("https://ed.example")))
	f.Add(sign(f, jwt.SigningMethodHS256, hsSecret, "", claims("https://hs.example")))
	f.Add(sign(f, jwt.SigningMethodES256, ecKey, "", claims("https://ec.example")))
	f.Add(unsignedNone(claims("https://rsa.example")))
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Add("a.b.c")
	f.Add(NewSecret())
	st := newFakeStore()
	a, err := New(Config{Mode: ModeProd, Tenants: st, Tokens: st, Now: func() time.Time { return testNow },
		Issuers: []Issuer{
			{Issuer: "https://rsa.example", Keys: map[string]crypto.PublicKey{"r1": &rsaKey.PublicKey}},
			{Issuer: "https://ec.example", Keys: map[string]crypto.PublicKey{"": &ecKey.PublicKey}},
			{Issuer: "https://ed.example", Keys: map[string]crypto.PublicKey{"e1": edPub}},
			{Issuer: "https://hs.example", HS256Secret: hsSecret},
		}})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, cred string) {
		r := req()
		r.Header.Set("Authorization", "Bearer "+cred)
		ac, err := a.Authenticate(r)
		if err != nil {
			var e *errs.Error
			require.True(t, errors.As(err, &e))
			require.Contains(t, []errs.Code{errs.Unauthorized, errs.Forbidden}, e.Code, e.Message)
			return
		}
		// Only genuinely signed claims get through: the seeds sign usr_alice in tnt_a.
		require.Equal(t, "tnt_a", ac.TenantID)
		require.Equal(t, "usr_alice", ac.Principal.PrincipalID)
		require.Equal(t, MethodJWT, ac.Method)
	})
}

// FuzzAuthenticateHeaders fuzzes every header the Authenticator reads.
func FuzzAuthenticateHeaders(f *testing.F) {
	f.Add("Bearer abc", "", "tnt_a", "usr_x")
	f.Add("", "agt_sk_x", "tnt_b", "")
	f.Add("Basic Zm9vOmJhcg==", "", "", "")
	f.Add("bearer  "+bootstrapTokenStr, "", "tnt_a", "")
	f.Add("", "", "tnt_a", "usr_\x00")
	st := newFakeStore()
	a, err := New(Config{Mode: ModeDemo, Tenants: st, Tokens: st, BootstrapToken: bootstrapTokenStr})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, authz, apiKey, tenant, principal string) {
		r := req()
		for k, v := range map[string]string{"Authorization": authz, "X-API-Key": apiKey, "X-Tenant-Id": tenant, "X-Principal-Id": principal} {
			if v != "" {
				r.Header[k] = []string{v}
			}
		}
		ac, err := a.Authenticate(r)
		if err != nil {
			var e *errs.Error
			require.True(t, errors.As(err, &e))
			require.Contains(t, []errs.Code{errs.Unauthorized, errs.Forbidden}, e.Code, e.Message)
			return
		}
		switch ac.Method {
		case MethodHeader:
			require.Equal(t, strings.TrimSpace(tenant), ac.TenantID)
			require.Equal(t, []string{RoleTenantUser}, ac.Roles)
		case MethodToken:
			require.Equal(t, BootstrapPrincipalID, ac.Principal.PrincipalID)
		default:
			t.Fatalf("unexpected method %q", ac.Method)
		}
		require.NotEmpty(t, ac.TenantID+ac.Principal.PrincipalID)
	})
}

// FuzzParseBearer checks Authorization parsing round-trips.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer x", "bearer  y ", "Basic z", "Bearer", "Bearer a b", " Bearer\tq"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		cred, err := ParseBearer(v)
		if err != nil {
			require.Equal(t, errs.Unauthorized, errs.CodeOf(err))
			return
		}
		require.NotEmpty(t, cred)
		require.False(t, strings.ContainsAny(cred, " \t"))
		again, err := ParseBearer("Bearer " + cred)
		require.NoError(t, err)
		require.Equal(t, cred, again)
	})
}
