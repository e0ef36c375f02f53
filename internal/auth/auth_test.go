package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// fakeStore is an in-memory TenantLookup + TokenLookup + TokenCreator.
type fakeStore struct {
	mu      sync.Mutex
	tenants map[string]store.Tenant
	tokens  map[string]store.Token // by hash
	fail    error
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		tenants: map[string]store.Tenant{
			"tnt_a":   {TenantID: "tnt_a", Status: store.TenantActive},
			"tnt_b":   {TenantID: "tnt_b", Status: store.TenantActive},
			"tnt_off": {TenantID: "tnt_off", Status: store.TenantDisabled},
		},
		tokens: map[string]store.Token{},
	}
}

func (f *fakeStore) setStatus(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tenants[id]
	t.Status = status
	f.tenants[id] = t
}

func (f *fakeStore) GetTenant(_ context.Context, id string) (store.Tenant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return store.Tenant{}, f.fail
	}
	t, ok := f.tenants[id]
	if !ok {
		return store.Tenant{}, errs.ErrNotFound
	}
	return t, nil
}

func (f *fakeStore) TokenBySecretHash(_ context.Context, h string) (store.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tokens[h]
	if !ok {
		return store.Token{}, errs.ErrNotFound
	}
	return t, nil
}

func (f *fakeStore) CreateToken(_ context.Context, t store.Token) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.tokens[t.SecretHash]; ok {
		return errs.ErrConflict
	}
	f.tokens[t.SecretHash] = t
	return nil
}

var (
	keysOnce          sync.Once
	rsaKey, rsaOther  *rsa.PrivateKey
	ecKey             *ecdsa.PrivateKey
	edPub             ed25519.PublicKey
	edKey             ed25519.PrivateKey
	hsSecret          = []byte("0123456789abcdef0123456789abcdef-hs")
	testNow           = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	bootstrapTokenStr = "bootstrap-admin-token-0123456789abcdef"
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaOther, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		edPub, edKey, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
	})
}

// sign makes a JWT with method m, key k, optional kid, and claims.
func sign(t testing.TB, m jwt.SigningMethod, k any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k)
	require.NoError(t, err)
	return s
}

// claims returns valid claims for issuer iss, tenant tnt_a, overridden by kv pairs.
func claims(iss string, kv ...any) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss":       iss,
		"sub":       "usr_alice",
		"aud":       "agentos",
		"tenant_id": "tnt_a",
		"scope":     "runs:create runs:read",
		"iat":       testNow.Add(-time.Minute).Unix(),
		"exp":       testNow.Add(time.Hour).Unix(),
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(c, k)
		} else {
			c[k] = kv[i+1]
		}
	}
	return c
}

func unsignedNone(c jwt.MapClaims) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	b, _ := json.Marshal(c)
	return h + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

type bundle struct {
	st   *fakeStore
	auth *Authenticator
}

func setup(t *testing.T, mode string, extra ...Issuer) bundle {
	t.Helper()
	testKeys(t)
	st := newFakeStore()
	issuers := append([]Issuer{
		{Issuer: "https://rsa.example", Audience: []string{"agentos"}, Keys: map[string]crypto.PublicKey{"r1": &rsaKey.PublicKey}},
		{Issuer: "https://ec.example", Audience: []string{"agentos"}, Keys: map[string]crypto.PublicKey{"": &ecKey.PublicKey}},
		{Issuer: "https://ed.example", Keys: map[string]crypto.PublicKey{"e1": edPub}},
		{Issuer: "https://hs.example", Audience: []string{"agentos"}, HS256Secret: hsSecret},
	}, extra...)
	a, err := New(Config{Mode: mode, Tenants: st, Tokens: st, Issuers: issuers,
		BootstrapToken: bootstrapTokenStr, Now: func() time.Time { return testNow }})
	require.NoError(t, err)
	return bundle{st: st, auth: a}
}

func (b bundle) addToken(t *testing.T, tok store.Token) string {
	t.Helper()
	secret := NewSecret()
	tok.SecretHash = HashSecret(secret)
	require.NoError(t, b.st.CreateToken(context.Background(), tok))
	return secret
}

func req(headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/runs", nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func bearer(s string) []string { return []string{"Authorization", "Bearer " + s} }

func requireCode(t *testing.T, err error, code errs.Code, msgPart string) {
	t.Helper()
	require.Error(t, err)
	var e *errs.Error
	require.True(t, errors.As(err, &e), "want *errs.Error, got %T %v", err, err)
	require.Equal(t, code, e.Code, "message: %s", e.Message)
	require.Contains(t, e.Message, msgPart)
}

func TestAuthenticateJWTAccepted(t *testing.T) {
	t.Parallel()
	b := setup(t, ModeProd)
	tests := []struct {
		name   string
		token  func(t *testing.T) string
		tenant string
		scopes []string
		roles  []string
		ptype  string
	}{
		{"RS256 scope string", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example"))
		}, "tnt_a", []string{"runs:create", "runs:read"}, []string{RoleTenantUser}, "user"},
		{"ES256 tid and scp list, any kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ecKey, "whatever", claims("https://ec.example",
				"tenant_id", nil, "tid", "tnt_b", "scope", nil, "scp", []string{"models:invoke", "models:list"}))
		}, "tnt_b", []string{"models:invoke", "models:list"}, []string{RoleTenantUser}, "user"},
		{"EdDSA service with roles, aud list", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodEdDSA, edKey, "e1", claims("https://ed.example",
				"sub", "svc_bot", "aud", []string{"x", "y"}, "roles", []string{RoleTenantService}, "scopes", []string{"runs:read"}, "scope", nil))
		}, "tnt_a", []string{"runs:read"}, []string{RoleTenantService}, "service"},
		{"HS256 with configured secret", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("https://hs.example", "principal_type", "service"))
		}, "tnt_a", []string{"runs:create", "runs:read"}, []string{RoleTenantService}, "service"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ac, err := b.auth.Authenticate(req(bearer(tc.token(t))...))
			require.NoError(t, err)
			require.Equal(t, tc.tenant, ac.TenantID)
			require.Equal(t, tc.scopes, ac.Scopes)
			require.Equal(t, tc.roles, ac.Roles)
			require.Equal(t, tc.ptype, ac.Principal.PrincipalType)
			require.Equal(t, MethodJWT, ac.Method)
		})
	}
}

func TestAuthenticateJWTRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, ModeDemo)
	rsaPubDER, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	require.NoError(t, err)
	tests := []struct {
		name  string
		token func(t *testing.T) string
		code  errs.Code
		msg   string
	}{
		{"alg none", func(t *testing.T) string { return unsignedNone(claims("https://rsa.example")) },
			errs.Unauthorized, `alg "none"`},
		{"alg none signed with library", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "r1", claims("https://rsa.example"))
		}, errs.Unauthorized, `alg "none"`},
		{"HS256 signed with RSA public key (confusion)", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, rsaPubDER, "r1", claims("https://rsa.example"))
		}, errs.Unauthorized, "no shared secret"},
		{"ES256 token against RSA key", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, ecKey, "r1", claims("https://rsa.example"))
		}, errs.Unauthorized, "does not match"},
		{"RS256 signed by another key", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaOther, "r1", claims("https://rsa.example"))
		}, errs.Unauthorized, "signature invalid"},
		{"HS256 with wrong secret", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx!"), "", claims("https://hs.example"))
		}, errs.Unauthorized, "signature invalid"},
		{"HS512 refused", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS512, hsSecret, "", claims("https://hs.example"))
		}, errs.Unauthorized, "HS512 is refused"},
		{"expired", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "exp", testNow.Add(-time.Hour).Unix()))
		}, errs.Unauthorized, "expired"},
		{"nbf in future", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "nbf", testNow.Add(time.Hour).Unix()))
		}, errs.Unauthorized, "nbf"},
		{"iat in future", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "iat", testNow.Add(time.Hour).Unix()))
		}, errs.Unauthorized, "iat"},
		{"wrong iss", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://evil.example"))
		}, errs.Unauthorized, "not trusted"},
		{"no iss", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "iss", nil))
		}, errs.Unauthorized, "no iss"},
		{"wrong aud", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "aud", "someone-else"))
		}, errs.Unauthorized, "audience"},
		{"missing aud", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "aud", nil))
		}, errs.Unauthorized, "aud"},
		{"missing exp", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "exp", nil))
		}, errs.Unauthorized, "exp claim is required"},
		{"exp wrong type", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "exp", "tomorrow"))
		}, errs.Unauthorized, "wrong type"},
		{"unknown kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r9", claims("https://rsa.example"))
		}, errs.Unauthorized, `unknown kid "r9"`},
		{"no kid, no default key", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "", claims("https://rsa.example"))
		}, errs.Unauthorized, "no kid"},
		{"no sub", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "sub", nil))
		}, errs.Unauthorized, "sub claim"},
		{"no tenant for non-admin", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "tenant_id", nil))
		}, errs.Unauthorized, "names no tenant"},
		{"scope wrong type", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "scope", 42))
		}, errs.Unauthorized, "scope claim"},
		{"unknown tenant", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "tenant_id", "tnt_zzz"))
		}, errs.Unauthorized, "unknown tenant"},
		{"disabled tenant", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "tenant_id", "tnt_off"))
		}, errs.Forbidden, "disabled"},
		{"tampered payload", func(t *testing.T) string {
			s := sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example"))
			parts := strings.Split(s, ".")
			c := claims("https://rsa.example", "tenant_id", "tnt_b")
			p, _ := json.Marshal(c)
			parts[1] = base64.RawURLEncoding.EncodeToString(p)
			return strings.Join(parts, ".")
		}, errs.Unauthorized, "signature invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := b.auth.Authenticate(req(bearer(tc.token(t))...))
			requireCode(t, err, tc.code, tc.msg)
		})
	}
}

func TestAuthenticateAPITokens(t *testing.T) {
	t.Parallel()
	b := setup(t, ModeProd)
	past := testNow.Add(-time.Hour)
	future := testNow.Add(time.Hour)
	good := b.addToken(t, store.Token{TokenID: "tok_good", TenantID: "tnt_a", PrincipalID: "usr_bob",
		Scopes: []string{ScopeRunsRead}, Roles: []string{RoleTenantAdmin}, ExpiresAt: &future})
	noRoles := b.addToken(t, store.Token{TokenID: "tok_noroles", TenantID: "tnt_a", PrincipalID: "svc_x"})
	revoked := b.addToken(t, store.Token{TokenID: "tok_rev", TenantID: "tnt_a", PrincipalID: "usr_bob", RevokedAt: &past})
	expired := b.addToken(t, store.Token{TokenID: "tok_exp", TenantID: "tnt_a", PrincipalID: "usr_bob", ExpiresAt: &past})
	disabled := b.addToken(t, store.Token{TokenID: "tok_off", TenantID: "tnt_off", PrincipalID: "usr_bob"})
	admin := b.addToken(t, store.Token{TokenID: "tok_pa", TenantID: "tnt_a", PrincipalID: "usr_platform_admin",
		Scopes: AllScopes, Roles: []string{RolePlatformAdmin}})

	t.Run("bearer", func(t *testing.T) {
		t.Parallel()
		ac, err := b.auth.Authenticate(req(bearer(good)...))
		require.NoError(t, err)
		require.Equal(t, "tnt_a", ac.TenantID)
		require.Equal(t, "usr_bob", ac.Principal.PrincipalID)
		require.Equal(t, []string{RoleTenantAdmin}, ac.Roles)
		require.Equal(t, MethodToken, ac.Method)
		require.Equal(t, "tok_good", ac.Session["token_id"])
	})
	t.Run("X-API-Key, default role, service type", func(t *testing.T) {
		t.Parallel()
		ac, err := b.auth.Authenticate(req("X-API-Key", noRoles))
		require.NoError(t, err)
		require.Equal(t, []string{RoleTenantUser}, ac.Roles)
		require.Equal(t, "service", ac.Principal.PrincipalType)
		require.Empty(t, ac.Scopes)
	})
	t.Run("same credential in both headers", func(t *testing.T) {
		t.Parallel()
		_, err := b.auth.Authenticate(req(append(bearer(good), "X-API-Key", good)...))
		require.NoError(t, err)
	})
	t.Run("same tenant in X-Tenant-Id", func(t *testing.T) {
		t.Parallel()
		ac, err := b.auth.Authenticate(req(append(bearer(good), "X-Tenant-Id", "tnt_a")...))
		require.NoError(t, err)
		require.Equal(t, "tnt_a", ac.TenantID)
	})
	t.Run("platform admin selects tenant", func(t *testing.T) {
		t.Parallel()
		ac, err := b.auth.Authenticate(req(append(bearer(admin), "X-Tenant-Id", "tnt_b")...))
		require.NoError(t, err)
		require.Equal(t, "tnt_b", ac.TenantID)
		require.Equal(t, "usr_platform_admin", ac.Principal.PrincipalID)
	})
	t.Run("platform admin without X-Tenant-Id runs in its token's tenant", func(t *testing.T) {
		t.Parallel()
		ac, err := b.auth.Authenticate(req(bearer(admin)...))
		require.NoError(t, err)
		require.Equal(t, "tnt_a", ac.TenantID)
	})

	refusals := []struct {
		name    string
		headers []string
		code    errs.Code
		msg     string
	}{
		{"unknown token", bearer(NewSecret()), errs.Unauthorized, "invalid API token"},
		{"revoked", bearer(revoked), errs.Unauthorized, "revoked"},
		{"expired", []string{"X-API-Key", expired}, errs.Unauthorized, "expired"},
		{"disabled tenant", bearer(disabled), errs.Forbidden, "disabled"},
		{"cross-tenant X-Tenant-Id for non-admin", append(bearer(good), "X-Tenant-Id", "tnt_b"), errs.Forbidden, "only a platform_admin"},
		{"platform admin selects unknown tenant", append(bearer(admin), "X-Tenant-Id", "tnt_nope"), errs.Unauthorized, "unknown tenant"},
		{"platform admin selects disabled tenant", append(bearer(admin), "X-Tenant-Id", "tnt_off"), errs.Forbidden, "disabled"},
		{"conflicting credentials", append(bearer(good), "X-API-Key", admin), errs.Unauthorized, "different credentials"},
		{"basic auth", []string{"Authorization", "Basic dXNlcjpwYXNz"}, errs.Unauthorized, "Bearer"},
		{"empty bearer", []string{"Authorization", "Bearer "}, errs.Unauthorized, "Bearer"},
		{"two tokens", []string{"Authorization", "Bearer a b"}, errs.Unauthorized, "one token"},
		{"repeated header", []string{"X-API-Key", good, "X-API-Key", good}, errs.Unauthorized, "2 times"},
		{"malformed X-Tenant-Id", append(bearer(good), "X-Tenant-Id", "tnt a/../"), errs.Unauthorized, "malformed"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := b.auth.Authenticate(req(tc.headers...))
			requireCode(t, err, tc.code, tc.msg)
		})
	}
}

func TestAuthenticateStoreDown(t *testing.T) {
	t.Parallel()
	b := setup(t, ModeDemo)
	b.st.fail = errors.New("disk on fire")
	_, err := b.auth.Authenticate(req("X-Tenant-Id", "tnt_a"))
	requireCode(t, err, errs.DependencyUnavailable, "tnt_a")
}

func TestAuthenticateHeaderOnly(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{ModeDemo, ModeDev} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b := setup(t, mode)
			ac, err := b.auth.Authenticate(req("X-Tenant-Id", "tnt_a"))
			require.NoError(t, err)
			require.Equal(t, "tnt_a", ac.TenantID)
			require.Equal(t, AnonymousPrincipalID, ac.Principal.PrincipalID)
			require.Equal(t, []string{RoleTenantUser}, ac.Roles)
			require.Equal(t, HeaderUserScopes, ac.Scopes)
			require.False(t, ac.HasScope(ScopeAdmin))
			require.False(t, ac.HasScope(ScopeAgentsWrite))
			require.Equal(t, MethodHeader, ac.Method)

			ac, err = b.auth.Authenticate(req("X-Tenant-Id", "tnt_b", "X-Principal-Id", "usr_carol"))
			require.NoError(t, err)
			require.Equal(t, "usr_carol", ac.Principal.PrincipalID)

			_, err = b.auth.Authenticate(req("X-Tenant-Id", "tnt_unknown"))
			requireCode(t, err, errs.Unauthorized, "unknown tenant")
			_, err = b.auth.Authenticate(req("X-Tenant-Id", "tnt_off"))
			requireCode(t, err, errs.Forbidden, "disabled")
			_, err = b.auth.Authenticate(req())
			requireCode(t, err, errs.Unauthorized, "missing credentials: send X-Tenant-Id: <tenant_id> (accepted alone in "+mode+" mode")
			requireCode(t, err, errs.Unauthorized, "Authorization: Bearer <token>")
		})
	}
	t.Run("prod refuses header auth", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ModeProd)
		_, err := b.auth.Authenticate(req("X-Tenant-Id", "tnt_a", "X-Principal-Id", "usr_x"))
		requireCode(t, err, errs.Unauthorized, "prod")
		// Without credentials prod does not suggest the tenant header.
		_, err = b.auth.Authenticate(req())
		requireCode(t, err, errs.Unauthorized, "missing credentials: send Authorization: Bearer <token> or X-API-Key")
		require.NotContains(t, err.Error(), "X-Tenant-Id")
	})
}

func TestBootstrapToken(t *testing.T) {
	t.Parallel()
	b := setup(t, ModeProd)
	ac, err := b.auth.Authenticate(req(bearer(bootstrapTokenStr)...))
	require.NoError(t, err)
	require.Equal(t, BootstrapPrincipalID, ac.Principal.PrincipalID)
	require.Equal(t, "", ac.TenantID)
	require.True(t, ac.HasRole(RolePlatformAdmin))
	require.ElementsMatch(t, AllScopes, ac.Scopes)

	ac, err = b.auth.Authenticate(req(append(bearer(bootstrapTokenStr), "X-Tenant-Id", "tnt_b")...))
	require.NoError(t, err)
	require.Equal(t, "tnt_b", ac.TenantID)

	_, err = b.auth.Authenticate(req(bearer(bootstrapTokenStr + "x")...))
	requireCode(t, err, errs.Unauthorized, "invalid API token")

	_, err = New(Config{Mode: ModeProd, Tenants: b.st, BootstrapToken: "short"})
	require.ErrorContains(t, err, "at least 32")
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	testKeys(t)
	st := newFakeStore()
	bad := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"mode", Config{Mode: "staging", Tenants: st}, "invalid mode"},
		{"no tenants", Config{Mode: ModeDemo}, "Tenants"},
		{"issuer without iss", Config{Mode: ModeDemo, Tenants: st, Issuers: []Issuer{{HS256Secret: hsSecret}}}, "required"},
		{"issuer without keys", Config{Mode: ModeDemo, Tenants: st, Issuers: []Issuer{{Issuer: "x"}}}, "no keys"},
		{"short hs secret", Config{Mode: ModeDemo, Tenants: st, Issuers: []Issuer{{Issuer: "x", HS256Secret: []byte("short")}}}, "32 bytes"},
		{"bad jwks url", Config{Mode: ModeDemo, Tenants: st, Issuers: []Issuer{{Issuer: "x", JWKSURL: "file:///etc/passwd"}}}, "http(s)"},
		{"unsupported key", Config{Mode: ModeDemo, Tenants: st, Issuers: []Issuer{{Issuer: "x", Keys: map[string]crypto.PublicKey{"": "nope"}}}}, "unsupported key type"},
		{"duplicate", Config{Mode: ModeDemo, Tenants: st, Issuers: []Issuer{{Issuer: "x", HS256Secret: hsSecret}, {Issuer: "x", HS256Secret: hsSecret}}}, "twice"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			require.ErrorContains(t, err, tc.msg)
		})
	}
}

func TestMiddlewareAndRequire(t *testing.T) {
	t.Parallel()
	b := setup(t, ModeDemo)
	var failures []string
	var mu sync.Mutex
	b.auth.cfg.OnFailure = func(code string) { mu.Lock(); failures = append(failures, code); mu.Unlock() }

	h := b.auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ac, err := Require(r.Context(), ScopeRunsCreate)
		require.NoError(t, err)
		_, err = Require(r.Context(), ScopeAgentsWrite)
		requireCode(t, err, errs.Forbidden, `missing scope "agents:write"`)
		_, _ = w.Write([]byte(ac.TenantID))
	}))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req("X-Tenant-Id", "tnt_a"))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "tnt_a", rec.Body.String())

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req())
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &env))
	require.Equal(t, "unauthorized", env.Error.Code)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req("X-Tenant-Id", "tnt_off"))
	require.Equal(t, http.StatusForbidden, rec.Code)

	mu.Lock()
	require.Equal(t, []string{"unauthorized", "forbidden"}, failures)
	mu.Unlock()

	_, err := Require(context.Background(), ScopeRunsRead)
	requireCode(t, err, errs.Unauthorized, "not authenticated")
}

func TestIssueToken(t *testing.T) {
	t.Parallel()
	b := setup(t, ModeProd)
	ctx := context.Background()
	exp := testNow.Add(24 * time.Hour)
	tok, secret, err := IssueToken(ctx, b.st, IssueParams{TenantID: "tnt_a", PrincipalID: "usr_dan",
		Scopes: []string{ScopeRunsCreate}, Roles: []string{RoleTenantUser}, ExpiresAt: &exp, Now: testNow})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(secret, SecretPrefix))
	require.True(t, strings.HasPrefix(tok.TokenID, TokenIDPrefix))
	require.Equal(t, HashSecret(secret), tok.SecretHash)
	require.NotContains(t, tok.SecretHash, secret)
	require.Len(t, tok.SecretHash, 64)

	ac, err := b.auth.Authenticate(req(bearer(secret)...))
	require.NoError(t, err)
	require.Equal(t, "usr_dan", ac.Principal.PrincipalID)

	bad := []struct {
		p     IssueParams
		field string
	}{
		{IssueParams{PrincipalID: "usr_x"}, "tenant_id"},
		{IssueParams{TenantID: "tnt_a"}, "principal_id"},
		{IssueParams{TenantID: "tnt_a", PrincipalID: "usr_x", Scopes: []string{"root"}}, "scopes"},
		{IssueParams{TenantID: "tnt_a", PrincipalID: "usr_x", Roles: []string{"god"}}, "roles"},
		{IssueParams{TenantID: "tnt_a", PrincipalID: "usr_x", ExpiresAt: &testNow, Now: testNow}, "expires_at"},
	}
	for _, tc := range bad {
		_, _, err := IssueToken(ctx, b.st, tc.p)
		requireCode(t, err, errs.InvalidRequest, tc.field)
	}
	require.NotEqual(t, NewSecret(), NewSecret())
}

func TestLooksLikeJWT(t *testing.T) {
	t.Parallel()
	require.False(t, LooksLikeJWT(NewSecret()))
	require.False(t, LooksLikeJWT("a.b.c"))
	require.True(t, LooksLikeJWT(unsignedNone(claims("x"))))
}

// TestPlatformAdminHomeTenantDisabled: disabling the tenant that holds the
// platform admin's credential does not lock the platform admin out; it
// acts at platform scope and can still select other tenants, while the
// disabled tenant stays forbidden for everyone acting in it.
func TestPlatformAdminHomeTenantDisabled(t *testing.T) {
	t.Parallel()
	b := setup(t, ModeProd)
	b.st.tenants["tnt_home"] = store.Tenant{TenantID: "tnt_home", Status: store.TenantActive}
	admin := b.addToken(t, store.Token{TokenID: "tok_pa", TenantID: "tnt_home", PrincipalID: "usr_platform_admin",
		Scopes: AllScopes, Roles: []string{RolePlatformAdmin}})
	tenantAdmin := b.addToken(t, store.Token{TokenID: "tok_ta", TenantID: "tnt_home", PrincipalID: "usr_home_admin",
		Scopes: AllScopes, Roles: []string{RoleTenantAdmin}})
	adminJWT := sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example",
		"tenant_id", "tnt_home", "roles", []string{RolePlatformAdmin}, "sub", "usr_idp_admin"))
	setStatus := func(status string) {
		b.st.mu.Lock()
		defer b.st.mu.Unlock()
		b.st.tenants["tnt_home"] = store.Tenant{TenantID: "tnt_home", Status: status}
	}

	ac, err := b.auth.Authenticate(req(bearer(admin)...))
	require.NoError(t, err)
	require.Equal(t, "tnt_home", ac.TenantID, "active home tenant: the admin acts in it")

	setStatus(store.TenantDisabled)
	for _, cred := range []string{admin, adminJWT} {
		ac, err = b.auth.Authenticate(req(bearer(cred)...))
		require.NoError(t, err, "a disabled home tenant does not lock the platform admin out")
		require.Equal(t, "", ac.TenantID, "platform scope")
		require.True(t, ac.HasRole(RolePlatformAdmin))
		require.True(t, ac.IsAdminOf("tnt_home"), "it may administer (re-enable) its home tenant")

		ac, err = b.auth.Authenticate(req(append(bearer(cred), "X-Tenant-Id", "tnt_b")...))
		require.NoError(t, err)
		require.Equal(t, "tnt_b", ac.TenantID, "and still select another, active tenant")

		_, err = b.auth.Authenticate(req(append(bearer(cred), "X-Tenant-Id", "tnt_home")...))
		requireCode(t, err, errs.Forbidden, "disabled")
	}
	_, err = b.auth.Authenticate(req(bearer(tenantAdmin)...))
	requireCode(t, err, errs.Forbidden, "disabled")

	// A deleted home tenant: platform scope too.
	b.st.mu.Lock()
	delete(b.st.tenants, "tnt_home")
	b.st.mu.Unlock()
	ac, err = b.auth.Authenticate(req(bearer(admin)...))
	require.NoError(t, err)
	require.Equal(t, "", ac.TenantID)

	// Re-enabled: the admin acts in its home tenant again.
	setStatus(store.TenantActive)
	ac, err = b.auth.Authenticate(req(bearer(admin)...))
	require.NoError(t, err)
	require.Equal(t, "tnt_home", ac.TenantID)

	// A store failure is still an error, not platform scope.
	b.st.mu.Lock()
	b.st.fail = errors.New("disk on fire")
	b.st.mu.Unlock()
	_, err = b.auth.Authenticate(req(bearer(admin)...))
	require.Error(t, err)
}

// A verified JWT presented again is served from the verified cache: same
// Context, the tenant still checked on every use, and refused once expired.
func TestVerifiedJWTCache(t *testing.T) {
	t.Parallel()
	testKeys(t)
	st := newFakeStore()
	now := testNow
	a, err := New(Config{Mode: ModeProd, Tenants: st, Tokens: st, Now: func() time.Time { return now },
		Issuers: []Issuer{{Issuer: "https://ed.example", Keys: map[string]crypto.PublicKey{"e1": edPub}}}})
	require.NoError(t, err)
	tok := sign(t, jwt.SigningMethodEdDSA, edKey, "e1", claims("https://ed.example", "exp", testNow.Add(2*time.Minute).Unix()))
	first, err := a.Authenticate(req(bearer(tok)...))
	require.NoError(t, err)
	second, err := a.Authenticate(req(bearer(tok)...))
	require.NoError(t, err)
	require.Equal(t, first, second)
	second.Scopes[0] = "mutated"
	third, err := a.Authenticate(req(bearer(tok)...))
	require.NoError(t, err)
	require.Equal(t, first.Scopes, third.Scopes, "callers get copies")

	st.setStatus("tnt_a", store.TenantDisabled)
	_, err = a.Authenticate(req(bearer(tok)...))
	requireCode(t, err, errs.Forbidden, "")
	st.setStatus("tnt_a", store.TenantActive)

	now = testNow.Add(3 * time.Minute)
	_, err = a.Authenticate(req(bearer(tok)...))
	requireCode(t, err, errs.Unauthorized, "expired")
}
