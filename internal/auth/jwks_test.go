package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

// jwksServer serves a mutable key set and counts fetches.
type jwksServer struct {
	mu     sync.Mutex
	set    JWKSet
	status int
	hits   atomic.Int64
	srv    *httptest.Server
}

func newJWKSServer(t *testing.T) *jwksServer {
	j := &jwksServer{status: http.StatusOK}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.hits.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.status != http.StatusOK {
			w.WriteHeader(j.status)
			return
		}
		_ = json.NewEncoder(w).Encode(j.set)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksServer) setKeys(t *testing.T, keys map[string]crypto.PublicKey) {
	t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	j.set = JWKSet{}
	for kid, k := range keys {
		jwk, err := JWKOf(kid, k)
		require.NoError(t, err)
		j.set.Keys = append(j.set.Keys, jwk)
	}
}

func (j *jwksServer) setStatus(s int) { j.mu.Lock(); j.status = s; j.mu.Unlock() }

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestJWKS(t *testing.T) {
	t.Parallel()
	testKeys(t)
	js := newJWKSServer(t)
	ed2Pub, ed2Key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	js.setKeys(t, map[string]crypto.PublicKey{"k-rsa": &rsaKey.PublicKey, "k-ec": &ecKey.PublicKey, "k-ed": edPub})

	clock := &fakeClock{t: testNow}
	st := newFakeStore()
	a, err := New(Config{Mode: ModeProd, Tenants: st, Now: clock.Now, HTTPClient: js.srv.Client(),
		Issuers: []Issuer{{Issuer: "https://idp.example", Audience: []string{"agentos"}, JWKSURL: js.srv.URL + "/jwks.json"}}})
	require.NoError(t, err)

	mint := func(m jwt.SigningMethod, k any, kid string) string {
		c := claims("https://idp.example")
		c["iat"] = clock.Now().Add(-time.Second).Unix()
		c["exp"] = clock.Now().Add(time.Hour).Unix()
		return sign(t, m, k, kid, c)
	}
	auth := func(tok string) error {
		_, err := a.Authenticate(req(bearer(tok)...))
		return err
	}

	require.NoError(t, auth(mint(jwt.SigningMethodRS256, rsaKey, "k-rsa")))
	require.NoError(t, auth(mint(jwt.SigningMethodES256, ecKey, "k-ec")))
	require.NoError(t, auth(mint(jwt.SigningMethodEdDSA, edKey, "k-ed")))
	require.EqualValues(t, 1, js.hits.Load(), "key set is cached")

	// Key confusion through JWKS: ES256 header with the RSA kid.
	requireCode(t, auth(mint(jwt.SigningMethodES256, ecKey, "k-rsa")), errs.Unauthorized, "does not match")

	// Rotation: a new kid appears. Unknown kids refetch at most once per
	// jwksMinRefresh, so right after a fetch the new kid is still unknown.
	js.setKeys(t, map[string]crypto.PublicKey{"k-ed2": ed2Pub})
	requireCode(t, auth(mint(jwt.SigningMethodEdDSA, ed2Key, "k-ed2")), errs.Unauthorized, `unknown kid "k-ed2"`)
	require.EqualValues(t, 1, js.hits.Load(), "unknown kid refetch is rate limited")
	clock.Advance(jwksMinRefresh)
	require.NoError(t, auth(mint(jwt.SigningMethodEdDSA, ed2Key, "k-ed2")))
	require.EqualValues(t, 2, js.hits.Load())
	// The old kid is gone from the new set.
	clock.Advance(jwksMinRefresh)
	requireCode(t, auth(mint(jwt.SigningMethodEdDSA, edKey, "k-ed")), errs.Unauthorized, "unknown kid")
	require.EqualValues(t, 3, js.hits.Load())

	// A single-key set accepts tokens without kid.
	require.NoError(t, auth(mint(jwt.SigningMethodEdDSA, ed2Key, "")))

	// Endpoint down: cached keys keep working, unknown kids are a dependency error.
	js.setStatus(http.StatusInternalServerError)
	clock.Advance(jwksTTL)
	require.NoError(t, auth(mint(jwt.SigningMethodEdDSA, ed2Key, "k-ed2")))
	clock.Advance(jwksMinRefresh)
	requireCode(t, auth(mint(jwt.SigningMethodEdDSA, ed2Key, "k-zzz")), errs.DependencyUnavailable, "JWKS")
}

func TestJWKSUnreachableWithoutCache(t *testing.T) {
	t.Parallel()
	testKeys(t)
	js := newJWKSServer(t)
	js.setStatus(http.StatusNotFound)
	a, err := New(Config{Mode: ModeProd, Tenants: newFakeStore(), Now: func() time.Time { return testNow },
		HTTPClient: js.srv.Client(), Issuers: []Issuer{{Issuer: "https://idp.example", JWKSURL: js.srv.URL}}})
	require.NoError(t, err)
	_, err = a.Authenticate(req(bearer(sign(t, jwt.SigningMethodEdDSA, edKey, "k", claims("https://idp.example")))...))
	requireCode(t, err, errs.DependencyUnavailable, "cannot fetch the JWKS")
}

func TestParseJWKS(t *testing.T) {
	t.Parallel()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	jwk, err := JWKOf("p384", &p384.PublicKey)
	require.NoError(t, err)
	b, _ := json.Marshal(JWKSet{Keys: []JWK{jwk, {Kty: "oct", Kid: "sym"}, {Kty: "RSA", Kid: "enc", Use: "enc"}}})
	keys, err := parseJWKS(b)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Equal(t, []string{"ES384"}, keys["p384"].algs)

	bad := []string{
		`{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"short"}]}`,
		`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"OKP","crv":"X25519","x":"AAAA"}]}`,
		`not json`,
	}
	for _, s := range bad {
		_, err := parseJWKS([]byte(s))
		require.Error(t, err, s)
	}
	// An alg that does not fit the key type is refused.
	jwk.Alg = "RS256"
	b, _ = json.Marshal(JWKSet{Keys: []JWK{jwk}})
	_, err = parseJWKS(b)
	require.ErrorContains(t, err, "does not fit")
}

func TestNodeSigner(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "node.key")

	_, err := LoadOrCreateNodeKey(path, false)
	require.ErrorContains(t, err, "does not exist")

	s, err := LoadOrCreateNodeKey(path, true)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), di.Mode().Perm())

	again, err := LoadOrCreateNodeKey(path, false)
	require.NoError(t, err)
	require.Equal(t, s.KeyID(), again.KeyID())
	require.Equal(t, s.PublicKey(), again.PublicKey())
	require.Len(t, s.KeyID(), 16)

	st := newFakeStore()
	a, err := New(Config{Mode: ModeProd, Tenants: st, Issuers: []Issuer{s.Issuer()}})
	require.NoError(t, err)

	in := Context{TenantID: "tnt_a", Principal: Principal{PrincipalID: "usr_alice", PrincipalType: "user", DisplayName: "Alice"},
		Scopes: []string{ScopeModelsInvoke, ScopePolicyCheck}, Roles: []string{RoleTenantUser},
		PolicyContext: PolicyContext{Region: "eu", ConsentTags: []string{"marketing"}}}
	tok, err := s.Mint(in, "model-policy", time.Minute)
	require.NoError(t, err)
	out, err := a.Authenticate(req(bearer(tok)...))
	require.NoError(t, err)
	require.Equal(t, in.TenantID, out.TenantID)
	require.Equal(t, in.Principal, out.Principal)
	require.Equal(t, in.Scopes, out.Scopes)
	require.Equal(t, in.Roles, out.Roles)
	require.Equal(t, in.PolicyContext, out.PolicyContext)
	require.NotEmpty(t, out.Session["jti"])
	require.Empty(t, out.Actor)
	require.Equal(t, "usr_alice", out.ActorID())
	require.Empty(t, out.OnBehalfOf())

	// The orchestrator's tokens name it as the actor ("act").
	in.Actor = OrchestratorPrincipalID
	tok, err = s.Mint(in, "model-policy", time.Minute)
	require.NoError(t, err)
	out, err = a.Authenticate(req(bearer(tok)...))
	require.NoError(t, err)
	require.Equal(t, in.Principal, out.Principal)
	require.Equal(t, OrchestratorPrincipalID, out.ActorID())
	require.Equal(t, "usr_alice", out.OnBehalfOf())

	// Platform admin with no tenant round-trips too.
	tok, err = s.Mint(Context{Principal: Principal{PrincipalID: BootstrapPrincipalID}, Roles: []string{RolePlatformAdmin}, Scopes: AllScopes}, "", 0)
	require.NoError(t, err)
	out, err = a.Authenticate(req(bearer(tok)...))
	require.NoError(t, err)
	require.Equal(t, "", out.TenantID)
	require.True(t, out.HasRole(RolePlatformAdmin))

	// Another node's key is not trusted; an expired token is refused.
	other, err := LoadOrCreateNodeKey(filepath.Join(dir, "other.key"), true)
	require.NoError(t, err)
	tok, err = other.Mint(in, "", time.Minute)
	require.NoError(t, err)
	_, err = a.Authenticate(req(bearer(tok)...))
	requireCode(t, err, errs.Unauthorized, "unknown kid")

	old := NewNodeSigner(s.priv)
	old.now = func() time.Time { return time.Now().Add(-time.Hour) }
	tok, err = old.Mint(in, "", time.Minute)
	require.NoError(t, err)
	_, err = a.Authenticate(req(bearer(tok)...))
	requireCode(t, err, errs.Unauthorized, "expired")

	_, err = s.Mint(Context{TenantID: "tnt_a"}, "", 0)
	require.ErrorContains(t, err, "principal_id")

	// A key file readable by others is refused.
	require.NoError(t, os.Chmod(path, 0o644))
	_, err = LoadOrCreateNodeKey(path, true)
	require.ErrorContains(t, err, "chmod 600")
	// Garbage is refused.
	garbage := filepath.Join(dir, "garbage.key")
	require.NoError(t, os.WriteFile(garbage, []byte("hello"), 0o600))
	_, err = LoadOrCreateNodeKey(garbage, true)
	require.ErrorContains(t, err, "PEM")
}

func TestNodeKeyConcurrentCreate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "node.key")
	var wg sync.WaitGroup
	kids := make([]string, 4)
	errsOut := make([]error, 4)
	for i := range kids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := LoadOrCreateNodeKey(path, true)
			errsOut[i] = err
			if err == nil {
				kids[i] = s.KeyID()
			}
		}()
	}
	wg.Wait()
	for i := range kids {
		require.NoError(t, errsOut[i])
		require.Equal(t, kids[0], kids[i])
	}
}

// TestNodeSignerIssuerFor: a service trusts node tokens minted for its own
// audience only.
func TestNodeSignerIssuerFor(t *testing.T) {
	t.Parallel()
	s, err := LoadOrCreateNodeKey(filepath.Join(t.TempDir(), "node.key"), true)
	require.NoError(t, err)
	st := newFakeStore()
	services := []string{"agent-orchestrator", "model-policy", "federation"}
	authn := map[string]*Authenticator{}
	for _, svc := range services {
		a, err := New(Config{Mode: ModeProd, Tenants: st, Issuers: []Issuer{s.IssuerFor(svc)}})
		require.NoError(t, err)
		authn[svc] = a
	}
	ac := Context{TenantID: "tnt_a", Principal: Principal{PrincipalID: "usr_alice"}, Scopes: []string{ScopeRunsRead}}
	for _, aud := range services {
		tok, err := s.Mint(ac, aud, time.Minute)
		require.NoError(t, err)
		for _, svc := range services {
			out, err := authn[svc].Authenticate(req(bearer(tok)...))
			if svc == aud {
				require.NoError(t, err, "%s accepts a token minted for it", svc)
				require.Equal(t, "usr_alice", out.Principal.PrincipalID)
				continue
			}
			requireCode(t, err, errs.Unauthorized, "audience")
		}
	}
	// A token minted without an audience is trusted by no service.
	tok, err := s.Mint(ac, "", time.Minute)
	require.NoError(t, err)
	for _, svc := range services {
		_, err := authn[svc].Authenticate(req(bearer(tok)...))
		requireCode(t, err, errs.Unauthorized, "aud")
	}
	// The same token may be presented more than once (no jti replay
	// check for node tokens, by design: see IssuerFor).
	tok, err = s.Mint(ac, "model-policy", time.Minute)
	require.NoError(t, err)
	for range 2 {
		_, err := authn["model-policy"].Authenticate(req(bearer(tok)...))
		require.NoError(t, err)
	}
}
