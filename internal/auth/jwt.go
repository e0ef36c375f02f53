package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/nexixai/agentos/internal/errs"
)

// ClockSkew is the leeway allowed on exp, nbf and iat.
const ClockSkew = 30 * time.Second

// JWKS cache timing.
const (
	jwksTTL             = 10 * time.Minute // refetch after this
	jwksMinRefresh      = 30 * time.Second // an unknown kid refetches at most this often
	maxJWKSBytes        = 1 << 20
	maxJWTLen           = 16 << 10
	jwksStaleOnFailures = 24 * time.Hour // a stale key set is used this long when the endpoint is down
)

// Issuer is a trusted JWT issuer.
type Issuer struct {
	// Issuer is the exact "iss" value. Required.
	Issuer string
	// Audience, if non-empty, requires the token's "aud" to contain one of
	// these values. Empty accepts any audience.
	Audience []string
	// Keys are static verification keys by "kid"; the key under "" verifies
	// tokens of any kid. Supported: *rsa.PublicKey (RS256/384/512),
	// *ecdsa.PublicKey (ES256 on P-256, ES384 on P-384, ES512 on P-521),
	// ed25519.PublicKey (EdDSA).
	Keys map[string]crypto.PublicKey
	// HS256Secret, if set, lets this issuer sign HS256 tokens. HS256 is
	// refused otherwise.
	HS256Secret []byte
	// JWKSURL, if set, is fetched (and cached) for keys not in Keys.
	JWKSURL string
}

// verifyKey is a public key with the algorithms it may verify.
type verifyKey struct {
	key  any
	algs []string
}

// issuerState is an Issuer plus its JWKS cache.
type issuerState struct {
	Issuer
	static map[string]verifyKey
	client *http.Client
	now    func() time.Time

	mu          sync.Mutex
	jwks        map[string]verifyKey
	jwksFetched time.Time // last successful fetch
	jwksTried   time.Time // last attempt
	jwksErr     error     // error of the last attempt, nil if it succeeded
}

func newIssuerState(iss Issuer, client *http.Client, now func() time.Time) (*issuerState, error) {
	if iss.Issuer == "" {
		return nil, errors.New("Issuer (iss) is required")
	}
	if len(iss.Keys) == 0 && len(iss.HS256Secret) == 0 && iss.JWKSURL == "" {
		return nil, fmt.Errorf("issuer %q has no keys, HS256 secret or JWKS URL", iss.Issuer)
	}
	if len(iss.HS256Secret) > 0 && len(iss.HS256Secret) < 32 {
		return nil, fmt.Errorf("issuer %q: HS256 secret must be at least 32 bytes", iss.Issuer)
	}
	if iss.JWKSURL != "" {
		u, err := url.Parse(iss.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("issuer %q: JWKS URL %q must be an http(s) URL", iss.Issuer, iss.JWKSURL)
		}
	}
	st := &issuerState{Issuer: iss, static: map[string]verifyKey{}, client: client, now: now}
	for kid, k := range iss.Keys {
		algs, err := algsForKey(k)
		if err != nil {
			return nil, fmt.Errorf("issuer %q key %q: %w", iss.Issuer, kid, err)
		}
		st.static[kid] = verifyKey{key: k, algs: algs}
	}
	return st, nil
}

// algsForKey is the algorithm allow-list for a key type; it is what makes
// algorithm confusion impossible.
func algsForKey(k any) ([]string, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil || k.N.BitLen() < 2048 {
			return nil, errors.New("RSA keys must be at least 2048 bits")
		}
		return []string{"RS256", "RS384", "RS512"}, nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return nil, errors.New("nil ECDSA key")
		}
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}, nil
		case elliptic.P384():
			return []string{"ES384"}, nil
		case elliptic.P521():
			return []string{"ES512"}, nil
		}
		return nil, fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key size")
		}
		return []string{"EdDSA"}, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", k)
}

var jwtShapeRE = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$`)

// LooksLikeJWT reports whether cred has the shape of a compact JWS (three
// base64url segments whose first decodes to a JSON object). API token
// secrets never do.
func LooksLikeJWT(cred string) bool {
	if len(cred) > maxJWTLen || !jwtShapeRE.MatchString(cred) {
		return false
	}
	head, _, _ := strings.Cut(cred, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return false
	}
	var hdr map[string]any
	return json.Unmarshal(b, &hdr) == nil && hdr != nil
}

// verifyJWT checks a JWT against the configured issuers and builds its
// Auth Context.
func (a *Authenticator) verifyJWT(ctx context.Context, raw string) (Context, error) {
	unverified, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		if unverified != nil {
			if alg, _ := unverified.Header["alg"].(string); strings.EqualFold(alg, "none") {
				return Context{}, errs.E(errs.Unauthorized, "JWT alg \"none\" is refused")
			}
		}
		return Context{}, errs.E(errs.Unauthorized, "malformed JWT: %s", jwtReason(err))
	}
	alg := unverified.Method.Alg()
	if strings.EqualFold(alg, "none") {
		return Context{}, errs.E(errs.Unauthorized, "JWT alg \"none\" is refused")
	}
	iss, _ := unverified.Claims.GetIssuer()
	if iss == "" {
		return Context{}, errs.E(errs.Unauthorized, "JWT has no iss claim")
	}
	is, ok := a.issuers[iss]
	if !ok {
		return Context{}, errs.E(errs.Unauthorized, "JWT issuer %q is not trusted", iss)
	}
	kid, _ := unverified.Header["kid"].(string)

	var key any
	var methods []string
	if strings.HasPrefix(alg, "HS") {
		if alg != "HS256" || len(is.HS256Secret) == 0 {
			return Context{}, errs.E(errs.Unauthorized,
				"JWT alg %s is refused: issuer %q has no shared secret (only asymmetric keys)", alg, iss)
		}
		key, methods = is.HS256Secret, []string{"HS256"}
	} else {
		vk, err := is.keyFor(ctx, kid)
		if err != nil {
			return Context{}, err
		}
		if !slices.Contains(vk.algs, alg) {
			return Context{}, errs.E(errs.Unauthorized,
				"JWT alg %s does not match the issuer's key (want %s)", alg, strings.Join(vk.algs, " or "))
		}
		key, methods = vk.key, vk.algs
	}

	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(iss),
		jwt.WithLeeway(ClockSkew),
		jwt.WithTimeFunc(a.cfg.Now),
		jwt.WithIssuedAt(),
	}
	if len(is.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(is.Audience...))
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.NewParser(opts...).ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) {
		return key, nil
	}); err != nil {
		return Context{}, errs.E(errs.Unauthorized, "JWT refused: %s", jwtReason(err))
	}
	ac, err := contextFromClaims(claims)
	if err == nil {
		if exp, _ := claims.GetExpirationTime(); exp != nil {
			a.verified.put(raw, ac, exp.Time, a.cfg.Now())
		}
	}
	return ac, err
}

// verifiedCache remembers JWTs whose signature and claims were verified, so
// a token presented again (the node's service tokens are reused for a few
// minutes; clients reuse theirs) skips parsing and signature checks until
// it expires. An entry lives at most verifiedMaxAge, so a key withdrawn from
// an issuer's JWKS stops being honoured soon after.
type verifiedCache struct {
	mu sync.Mutex
	m  map[string]verifiedJWT
}

type verifiedJWT struct {
	ac    Context
	until time.Time
}

const (
	verifiedMaxAge  = 5 * time.Minute
	verifiedMaxSize = 10000
)

func (c *verifiedCache) put(raw string, ac Context, exp, now time.Time) {
	until := now.Add(verifiedMaxAge)
	if exp.Before(until) {
		until = exp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= verifiedMaxSize {
		c.m = map[string]verifiedJWT{} // bounded memory; entries are cheap to rebuild
	}
	c.m[raw] = verifiedJWT{ac: ac, until: until}
}

// get returns a copy of the cached Context of a still-valid token.
func (c *verifiedCache) get(raw string, now time.Time) (Context, bool) {
	c.mu.Lock()
	v, ok := c.m[raw]
	if ok && !now.Before(v.until) {
		delete(c.m, raw)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return Context{}, false
	}
	ac := v.ac
	ac.Scopes = slices.Clone(ac.Scopes)
	ac.Roles = slices.Clone(ac.Roles)
	ac.Session = maps.Clone(ac.Session)
	ac.PolicyContext.ConsentTags = slices.Clone(ac.PolicyContext.ConsentTags)
	return ac, true
}

// jwtReason turns a jwt error into a short, precise reason.
func jwtReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature invalid"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired (exp)"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token issued in the future (iat)"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		if strings.Contains(err.Error(), "exp") {
			return "exp claim is required"
		}
		if strings.Contains(err.Error(), "aud") {
			return "aud claim is required"
		}
		return "required claim missing"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer (iss)"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience (aud)"
	case errors.Is(err, jwt.ErrInvalidType):
		return "a registered claim has the wrong type"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unsupported or unverifiable algorithm"
	}
	return "invalid token"
}

// contextFromClaims maps verified claims to an Auth Context.
func contextFromClaims(c jwt.MapClaims) (Context, error) {
	sub, _ := c["sub"].(string)
	if sub == "" {
		return Context{}, errs.E(errs.Unauthorized, "JWT refused: sub claim (principal) is required")
	}
	tenant, err := stringClaim(c, "tenant_id")
	if err != nil {
		return Context{}, err
	}
	if tenant == "" {
		if tenant, err = stringClaim(c, "tid"); err != nil {
			return Context{}, err
		}
	}
	if tenant != "" && !tenantHeaderRE.MatchString(tenant) {
		return Context{}, errs.E(errs.Unauthorized, "JWT refused: tenant_id claim is malformed")
	}
	var scopes []string
	for _, name := range []string{"scope", "scp", "scopes"} {
		s, err := listClaim(c, name)
		if err != nil {
			return Context{}, err
		}
		for _, v := range s {
			if !slices.Contains(scopes, v) {
				scopes = append(scopes, v)
			}
		}
	}
	roles, err := listClaim(c, "roles")
	if err != nil {
		return Context{}, err
	}
	ptype, err := stringClaim(c, "principal_type")
	if err != nil {
		return Context{}, err
	}
	if ptype == "" {
		if ptype, err = stringClaim(c, "subject_type"); err != nil {
			return Context{}, err
		}
	}
	if ptype != "" && ptype != "user" && ptype != "service" {
		return Context{}, errs.E(errs.Unauthorized, "JWT refused: principal_type must be user or service")
	}
	ptype = principalTypeOf(sub, ptype, roles)
	if len(roles) == 0 {
		roles = []string{RoleTenantUser}
		if ptype == "service" {
			roles = []string{RoleTenantService}
		}
	}
	name, _ := c["display_name"].(string)
	if name == "" {
		name, _ = c["name"].(string)
	}
	ac := Context{
		TenantID:  tenant,
		Principal: Principal{PrincipalID: sub, PrincipalType: ptype, DisplayName: name},
		Scopes:    scopes,
		Roles:     roles,
		Method:    MethodJWT,
	}
	if ac.Scopes == nil {
		ac.Scopes = []string{}
	}
	if jti, _ := c["jti"].(string); jti != "" {
		ac.Session = map[string]any{"jti": jti}
	}
	if act, ok := c["act"]; ok && act != nil {
		// RFC 8693 actor claim: sub is acted for by act.sub, which is the
		// principal that audit records name.
		m, _ := act.(map[string]any)
		actor, _ := m["sub"].(string)
		if actor == "" || !tenantHeaderRE.MatchString(actor) {
			return Context{}, errs.E(errs.Unauthorized, "JWT refused: act claim must be an object with a sub")
		}
		if actor != sub {
			ac.Actor = actor
		}
	}
	if pc, ok := c["policy_context"]; ok && pc != nil {
		b, _ := json.Marshal(pc)
		if err := json.Unmarshal(b, &ac.PolicyContext); err != nil {
			return Context{}, errs.E(errs.Unauthorized, "JWT refused: policy_context claim is malformed")
		}
	}
	return ac, nil
}

func stringClaim(c jwt.MapClaims, name string) (string, error) {
	v, ok := c[name]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", errs.E(errs.Unauthorized, "JWT refused: %s claim must be a string", name)
	}
	return s, nil
}

// listClaim reads a space-separated string or a list of strings.
func listClaim(c jwt.MapClaims, name string) ([]string, error) {
	v, ok := c[name]
	if !ok || v == nil {
		return nil, nil
	}
	switch v := v.(type) {
	case string:
		return strings.Fields(v), nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, errs.E(errs.Unauthorized, "JWT refused: %s claim must be a list of strings", name)
			}
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
	return nil, errs.E(errs.Unauthorized, "JWT refused: %s claim must be a string or a list of strings", name)
}

// keyFor finds the verification key for kid: static keys first (exact kid,
// then the "" wildcard), then the JWKS.
func (s *issuerState) keyFor(ctx context.Context, kid string) (verifyKey, error) {
	if k, ok := s.static[kid]; ok && kid != "" {
		return k, nil
	}
	if k, ok := s.static[""]; ok {
		return k, nil
	}
	if s.JWKSURL == "" {
		if kid == "" {
			return verifyKey{}, errs.E(errs.Unauthorized, "JWT refused: no kid and issuer %q has no default key", s.Issuer.Issuer)
		}
		return verifyKey{}, errs.E(errs.Unauthorized, "JWT refused: unknown kid %q for issuer %q", kid, s.Issuer.Issuer)
	}
	return s.jwksKey(ctx, kid)
}

// jwksKey looks kid up in the cached JWKS, refetching when the cache is old
// or (rate-limited) when kid is unknown, which is how key rotation is seen.
func (s *issuerState) jwksKey(ctx context.Context, kid string) (verifyKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	lookup := func() (verifyKey, bool) {
		if kid == "" {
			if len(s.jwks) == 1 {
				for _, k := range s.jwks {
					return k, true
				}
			}
			return verifyKey{}, false
		}
		k, ok := s.jwks[kid]
		return k, ok
	}
	fresh := s.jwks != nil && now.Sub(s.jwksFetched) < jwksTTL
	k, found := lookup()
	if found && fresh {
		return k, nil
	}
	// Fetch when the cache is empty, old, or lacks kid, but at most once
	// per jwksMinRefresh so a down endpoint or a stream of bogus kids cannot
	// turn every request into a fetch.
	if s.jwksTried.IsZero() || now.Sub(s.jwksTried) >= jwksMinRefresh {
		s.jwksTried = now
		// A caller that hangs up must not poison the shared cache.
		keys, err := fetchJWKS(context.WithoutCancel(ctx), s.client, s.JWKSURL)
		if err != nil {
			s.jwksErr = err
		} else {
			s.jwks, s.jwksFetched, s.jwksErr = keys, now, nil
		}
		k, found = lookup()
	}
	if found && (s.jwksErr == nil || now.Sub(s.jwksFetched) < jwksStaleOnFailures) {
		return k, nil
	}
	if s.jwksErr != nil {
		return verifyKey{}, errs.Wrap(errs.DependencyUnavailable, s.jwksErr,
			"cannot fetch the JWKS of issuer %q", s.Issuer.Issuer)
	}
	if kid == "" {
		return verifyKey{}, errs.E(errs.Unauthorized, "JWT refused: no kid and the JWKS of issuer %q has several keys", s.Issuer.Issuer)
	}
	return verifyKey{}, errs.E(errs.Unauthorized, "JWT refused: unknown kid %q for issuer %q", kid, s.Issuer.Issuer)
}

// JWK is one JSON Web Key (RFC 7517) of the kinds AgentOS verifies.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// JWKSet is a JWKS document.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

func fetchJWKS(ctx context.Context, client *http.Client, u string) (map[string]verifyKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: JWKS larger than %d bytes", u, maxJWKSBytes)
	}
	return parseJWKS(body)
}

// parseJWKS parses a JWKS document into verification keys by kid. Keys
// meant only for encryption (use "enc") and unsupported key types are
// skipped; a malformed supported key is an error.
func parseJWKS(b []byte) (map[string]verifyKey, error) {
	var set JWKSet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	out := map[string]verifyKey{}
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := k.PublicKey()
		if errors.Is(err, errUnsupportedJWK) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("JWKS keys[%d] (kid %q): %w", i, k.Kid, err)
		}
		algs, err := algsForKey(pub)
		if err != nil {
			return nil, fmt.Errorf("JWKS keys[%d] (kid %q): %w", i, k.Kid, err)
		}
		if k.Alg != "" {
			if !slices.Contains(algs, k.Alg) {
				return nil, fmt.Errorf("JWKS keys[%d] (kid %q): alg %s does not fit a %s key", i, k.Kid, k.Alg, k.Kty)
			}
			algs = []string{k.Alg}
		}
		out[k.Kid] = verifyKey{key: pub, algs: algs}
	}
	return out, nil
}

var errUnsupportedJWK = errors.New("unsupported key type")

// PublicKey decodes the key.
func (k JWK) PublicKey() (crypto.PublicKey, error) {
	dec := base64.RawURLEncoding.DecodeString
	switch k.Kty {
	case "RSA":
		n, err1 := dec(k.N)
		e, err2 := dec(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA n or e")
		}
		eInt := int(new(big.Int).SetBytes(e).Int64())
		if eInt < 3 {
			return nil, errors.New("bad RSA exponent")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: eInt}, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err1 := dec(k.X)
		y, err2 := dec(k.Y)
		size := (curve.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, errors.New("bad EC x or y")
		}
		// Validate the point through crypto/ecdh-style uncompressed decoding.
		raw := append([]byte{4}, append(x, y...)...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
		if err != nil {
			return nil, fmt.Errorf("EC point: %w", err)
		}
		return pub, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported OKP curve %q", k.Crv)
		}
		x, err := dec(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 x")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, errUnsupportedJWK
}

// JWKOf renders a public key as a JWK (for serving a node's JWKS).
func JWKOf(kid string, pub crypto.PublicKey) (JWK, error) {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return JWK{Kty: "OKP", Crv: "Ed25519", X: enc(k), Kid: kid, Use: "sig", Alg: "EdDSA"}, nil
	case *rsa.PublicKey:
		return JWK{Kty: "RSA", N: enc(k.N.Bytes()), E: enc(big.NewInt(int64(k.E)).Bytes()), Kid: kid, Use: "sig", Alg: "RS256"}, nil
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			return JWK{}, err
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		algs, err := algsForKey(k)
		if err != nil {
			return JWK{}, err
		}
		return JWK{Kty: "EC", Crv: k.Curve.Params().Name, X: enc(b[1 : 1+size]), Y: enc(b[1+size:]), Kid: kid, Use: "sig", Alg: algs[0]}, nil
	}
	return JWK{}, fmt.Errorf("unsupported key type %T", pub)
}
