// Package identity signs and verifies the identity JWT that one federation
// node sends to another on every forwarded call (CONTRACT §6).
//
// Each node holds its own Ed25519 signing key (distinct from the key its
// services use among themselves); peers learn the public key from the peers
// file. A token says who sends (iss = the sending stack_id), to whom (aud =
// the target stack_id), for which tenant and principal (tenant_id, sub) with
// which scopes, and lives at most MaxTTL; its jti is refused on replay.
package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
)

// MaxTTL is the longest lifetime of an identity token.
const MaxTTL = 5 * time.Minute

// DefaultTTL is the lifetime Sign uses when asked for none.
const DefaultTTL = 2 * time.Minute

// Leeway tolerates clock skew between nodes when checking exp, nbf and iat.
const Leeway = 30 * time.Second

// PublicKeyPrefix starts the text form of a public key in the peers file.
const PublicKeyPrefix = "ed25519:"

// Claims is the content of an identity token.
type Claims struct {
	Issuer        string    // sending stack_id
	Audience      string    // receiving stack_id
	TenantID      string    // tenant the call runs in
	Subject       string    // principal id
	PrincipalType string    // user | service
	Scopes        []string  // the caller's scopes relevant to federation
	IssuedAt      time.Time // set by Sign
	ExpiresAt     time.Time // set by Sign
	JTI           string    // unique token id, set by Sign
}

// HasScope reports whether the token grants scope (admin grants all).
func (c Claims) HasScope(scope string) bool {
	return slices.Contains(c.Scopes, scope) || slices.Contains(c.Scopes, "admin")
}

// wireClaims is the JSON form of Claims.
type wireClaims struct {
	TenantID      string   `json:"tenant_id"`
	PrincipalType string   `json:"principal_type,omitempty"`
	Scopes        []string `json:"scopes"`
	jwt.RegisteredClaims
}

// Signer signs identity tokens as one node. It is safe for concurrent use.
type Signer struct {
	stackID string
	key     ed25519.PrivateKey
	now     func() time.Time
}

// NewSigner returns a Signer for stackID with key.
func NewSigner(stackID string, key ed25519.PrivateKey) *Signer {
	return &Signer{stackID: stackID, key: key, now: time.Now}
}

// StackID returns the issuer this Signer signs as.
func (s *Signer) StackID() string { return s.stackID }

// PublicKey returns the verification key to publish to peers.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// SetClock replaces the clock (tests).
func (s *Signer) SetClock(now func() time.Time) { s.now = now }

// Sign returns a token carrying c for c.Audience. Issuer, IssuedAt,
// ExpiresAt and JTI are set here; ttl is capped at MaxTTL (0 = DefaultTTL).
func (s *Signer) Sign(c Claims, ttl time.Duration) (string, error) {
	if c.Audience == "" || c.TenantID == "" || c.Subject == "" {
		return "", errors.New("identity: audience, tenant_id and subject are required")
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	ttl = min(ttl, MaxTTL)
	now := s.now().UTC().Truncate(time.Second)
	scopes := c.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	wc := wireClaims{
		TenantID:      c.TenantID,
		PrincipalType: c.PrincipalType,
		Scopes:        scopes,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.stackID,
			Subject:   c.Subject,
			Audience:  jwt.ClaimStrings{c.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        ids.New("jti_"),
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, wc)
	return tok.SignedString(s.key)
}

// KeyLookup returns the public key of a known peer, by stack_id.
type KeyLookup func(stackID string) (ed25519.PublicKey, bool)

// ReplayGuard remembers token ids (store.FederationStore satisfies it).
type ReplayGuard interface {
	// UseJTI records jti until expiresAt; false if it was seen before.
	UseJTI(ctx context.Context, jti string, expiresAt time.Time) (bool, error)
}

// Verifier checks identity tokens addressed to one node.
type Verifier struct {
	// Self is this node's stack_id: the only accepted audience.
	Self string
	// Keys finds the issuing peer's public key.
	Keys KeyLookup
	// Replay refuses a jti seen before.
	Replay ReplayGuard
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// unauthorized builds the error every verification failure returns; reason
// goes into details so that operators can tell failures apart.
func unauthorized(reason, format string, args ...any) *errs.Error {
	return errs.E(errs.Unauthorized, format, args...).WithDetails(map[string]any{"reason": reason})
}

// Verify checks token's signature (EdDSA only, by the key of the issuing
// peer), audience, lifetime (exp required, at most MaxTTL after iat) and
// replay, in that order, and returns its claims. Every failure is an
// unauthorized *errs.Error whose details.reason is one of unknown_issuer,
// bad_algorithm, bad_signature, malformed, wrong_audience, expired, ttl_too_long,
// replayed; a failing replay store is dependency_unavailable. The jti is
// only recorded once everything else has passed.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	return v.VerifyFrom(ctx, token, "")
}

// VerifyFrom is Verify for a token that must come from issuer (the stack
// the caller's client certificate names; "" accepts any known peer): a
// token of another issuer fails with reason issuer_certificate_mismatch
// before its jti is recorded, so it cannot use up the real issuer's token.
func (v *Verifier) VerifyFrom(ctx context.Context, token, issuer string) (Claims, error) {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	var wc wireClaims
	parser := jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithoutClaimsValidation())
	var issuerKnown = true
	parsed, err := parser.ParseWithClaims(token, &wc, func(t *jwt.Token) (any, error) {
		c, ok := t.Claims.(*wireClaims)
		if !ok || c.Issuer == "" {
			return nil, errors.New("no issuer")
		}
		key, ok := v.Keys(c.Issuer)
		if !ok {
			issuerKnown = false
			return nil, fmt.Errorf("unknown issuer %q", c.Issuer)
		}
		return key, nil
	})
	switch {
	case err == nil:
	case parsed != nil && parsed.Method != nil && parsed.Method.Alg() != jwt.SigningMethodEdDSA.Alg():
		return Claims{}, unauthorized("bad_algorithm", "identity token must be signed with EdDSA")
	case !issuerKnown:
		return Claims{}, unauthorized("unknown_issuer", "identity token issuer %q is not a known peer", wc.Issuer)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return Claims{}, unauthorized("bad_signature", "identity token signature does not verify with the key of peer %q", wc.Issuer)
	default:
		return Claims{}, unauthorized("malformed", "identity token is malformed or uses a refused algorithm")
	}
	if len(wc.Audience) != 1 || wc.Audience[0] != v.Self {
		return Claims{}, unauthorized("wrong_audience", "identity token audience %v is not this node (%s)", []string(wc.Audience), v.Self)
	}
	if wc.ExpiresAt == nil || wc.IssuedAt == nil {
		return Claims{}, unauthorized("malformed", "identity token lacks exp or iat")
	}
	t := now()
	exp, iat := wc.ExpiresAt.Time, wc.IssuedAt.Time
	if !t.Before(exp.Add(Leeway)) {
		return Claims{}, unauthorized("expired", "identity token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if iat.After(t.Add(Leeway)) || (wc.NotBefore != nil && wc.NotBefore.After(t.Add(Leeway))) {
		return Claims{}, unauthorized("not_yet_valid", "identity token is not valid yet")
	}
	if exp.Sub(iat) > MaxTTL {
		return Claims{}, unauthorized("ttl_too_long", "identity token lifetime exceeds %s", MaxTTL)
	}
	if wc.ID == "" || wc.TenantID == "" || wc.Subject == "" {
		return Claims{}, unauthorized("malformed", "identity token lacks jti, tenant_id or sub")
	}
	if issuer != "" && wc.Issuer != issuer {
		return Claims{}, unauthorized("issuer_certificate_mismatch",
			"identity token issuer %s does not match the client certificate (%s)", wc.Issuer, issuer)
	}
	fresh, err := v.Replay.UseJTI(ctx, wc.Issuer+"/"+wc.ID, exp.Add(Leeway))
	if err != nil {
		return Claims{}, errs.Wrap(errs.DependencyUnavailable, err, "cannot record identity token id")
	}
	if !fresh {
		return Claims{}, unauthorized("replayed", "identity token %s was already used", wc.ID)
	}
	return Claims{
		Issuer: wc.Issuer, Audience: wc.Audience[0], TenantID: wc.TenantID, Subject: wc.Subject,
		PrincipalType: wc.PrincipalType, Scopes: wc.Scopes, IssuedAt: iat, ExpiresAt: exp, JTI: wc.ID,
	}, nil
}

// GenerateKey returns a new Ed25519 private key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// LoadOrCreateKey reads a PKCS#8 PEM Ed25519 key from path. When the file
// does not exist and create is true, it generates one and writes it (0600);
// otherwise a missing file is an error.
func LoadOrCreateKey(path string, create bool) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return ParsePrivateKeyPEM(b)
	}
	if !os.IsNotExist(err) || !create {
		return nil, fmt.Errorf("identity: read signing key: %w", err)
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := WritePrivateKey(path, key); err != nil {
		return nil, err
	}
	return key, nil
}

// WritePrivateKey writes key to path as PKCS#8 PEM with mode 0600.
func WritePrivateKey(path string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// ParsePrivateKeyPEM parses a PKCS#8 PEM Ed25519 private key.
func ParsePrivateKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("identity: signing key: want a PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("identity: signing key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("identity: signing key is not Ed25519")
	}
	return priv, nil
}

// EncodePublicKey renders pub as "ed25519:<base64>" for the peers file.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey parses the text form of EncodePublicKey (the prefix is
// optional; standard or URL base64, padded or not).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), PublicKeyPrefix)
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("public key is not base64")
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key has %d bytes, want %d", len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}
