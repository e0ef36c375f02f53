package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/nexixai/agentos/internal/ids"
)

// NodeIssuer is the "iss" of tokens minted by a node key.
const NodeIssuer = "agentos-node"

// DefaultNodeTokenTTL is the lifetime of a minted token when Mint is given
// no positive ttl.
const DefaultNodeTokenTTL = 5 * time.Minute

// NodeSigner mints short-lived EdDSA JWTs that carry an Auth Context from
// one service of a node to another (orchestrator → model-policy,
// federation → orchestrator), long after the original request is gone.
type NodeSigner struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	kid  string
	now  func() time.Time
}

// NewNodeSigner wraps an existing Ed25519 private key.
func NewNodeSigner(priv ed25519.PrivateKey) *NodeSigner {
	pub := priv.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	return &NodeSigner{priv: priv, pub: pub, kid: hex.EncodeToString(sum[:8]), now: time.Now}
}

// LoadOrCreateNodeKey reads the Ed25519 private key (PKCS#8 PEM) at path.
// When the file is absent and create is true, a new key is generated and
// written with mode 0600 (parent directories 0700); concurrent callers
// (several services starting at once) all end up with the same key. When
// create is false (prod) the file must exist. A key file readable by group
// or others is refused.
func LoadOrCreateNodeKey(path string, create bool) (*NodeSigner, error) {
	s, err := loadNodeKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	if !create {
		return nil, fmt.Errorf("node key %s does not exist (generate it in demo/dev mode or provision it)", path)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate node key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode node key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("node key dir: %w", err)
	}
	// Write a temp file then hard-link it into place: the link fails if
	// another process won the race, and then its (complete) key is used.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".nodekey-*")
	if err != nil {
		return nil, fmt.Errorf("write node key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write node key: %w", err)
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write node key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write node key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("write node key: %w", err)
	}
	return loadNodeKey(path)
}

func loadNodeKey(path string) (*NodeSigner, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("node key %s has mode %v: it must not be readable by group or others (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("node key %s: want a PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("node key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("node key %s: want an Ed25519 key, got %T", path, k)
	}
	return NewNodeSigner(priv), nil
}

// KeyID is the key's fingerprint (first 8 bytes of SHA-256 of the public
// key, hex), used as the JWT "kid".
func (s *NodeSigner) KeyID() string { return s.kid }

// PublicKey returns the verification key.
func (s *NodeSigner) PublicKey() ed25519.PublicKey { return s.pub }

// Issuer returns an Issuer that trusts tokens minted by this key for any
// audience. Services should use IssuerFor instead, so that a token minted
// for one service is refused by the others.
func (s *NodeSigner) Issuer() Issuer {
	return Issuer{Issuer: NodeIssuer, Keys: map[string]crypto.PublicKey{s.kid: s.pub}}
}

// IssuerFor returns the Issuer a service adds to its Authenticator to trust
// tokens minted by this key for that service only: the token's "aud" must
// be audience (the service name: "agent-orchestrator", "model-policy",
// "federation"), so a token minted for model-policy is refused by the
// orchestrator and vice versa. A token minted without an audience is
// refused too.
//
// Node tokens are not checked for jti replay, by decision: they are minted
// fresh for every internal call (never handed to clients), bound to one
// audience, live at most DefaultNodeTokenTTL, and travel only between the
// node's own services. A replay check would need state shared by every
// replica of a service (an in-process cache misses replays sent to another
// replica; a store write per internal call is costly on the model-call
// path), and would break the transparent retries net/http makes of an
// idempotent request with the same headers. The federation identity
// tokens that cross node boundaries are replay-checked (federation/identity).
func (s *NodeSigner) IssuerFor(audience string) Issuer {
	iss := s.Issuer()
	iss.Audience = []string{audience}
	return iss
}

// Mint returns an EdDSA JWT carrying ac: iss "agentos-node", kid = KeyID,
// sub = principal, tenant_id, scopes (list), roles, principal_type,
// display_name, policy_context and act ({"sub": ac.Actor}) when set, aud = audience when non-empty,
// iat, exp = now+ttl (DefaultNodeTokenTTL when ttl <= 0) and a fresh jti.
func (s *NodeSigner) Mint(ac Context, audience string, ttl time.Duration) (string, error) {
	if ac.Principal.PrincipalID == "" {
		return "", errors.New("mint node token: principal_id is required")
	}
	if ttl <= 0 {
		ttl = DefaultNodeTokenTTL
	}
	now := s.now()
	scopes := ac.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	roles := ac.Roles
	if roles == nil {
		roles = []string{}
	}
	claims := jwt.MapClaims{
		"iss":            NodeIssuer,
		"sub":            ac.Principal.PrincipalID,
		"tenant_id":      ac.TenantID,
		"scopes":         scopes,
		"roles":          roles,
		"principal_type": principalTypeOf(ac.Principal.PrincipalID, ac.Principal.PrincipalType, ac.Roles),
		"iat":            now.Unix(),
		"exp":            now.Add(ttl).Unix(),
		"jti":            ids.New("jti_"),
	}
	if audience != "" {
		claims["aud"] = audience
	}
	if ac.Principal.DisplayName != "" {
		claims["display_name"] = ac.Principal.DisplayName
	}
	if ac.Actor != "" {
		// RFC 8693 actor claim: the service acting for sub.
		claims["act"] = map[string]any{"sub": ac.Actor}
	}
	if pc := ac.PolicyContext; pc.DataClassification != "" || pc.Region != "" || pc.Purpose != "" || len(pc.ConsentTags) > 0 {
		claims["policy_context"] = pc
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = s.kid
	return tok.SignedString(s.priv)
}

// MintCache reuses node tokens: a token minted for a principal is handed
// out again until half of its lifetime has passed, so a busy executor does
// not sign (and the receiving service does not verify) a new token per
// call. Tokens carry no per-call data, so reuse is safe; they are never
// checked for replay (see IssuerFor).
type MintCache struct {
	signer   *NodeSigner
	audience string
	ttl      time.Duration

	mu sync.Mutex
	m  map[string]mintedToken
}

type mintedToken struct {
	token string
	renew time.Time
}

// NewMintCache returns a cache of tokens for audience, each valid for ttl.
func (s *NodeSigner) NewMintCache(audience string, ttl time.Duration) *MintCache {
	if ttl <= 0 {
		ttl = DefaultNodeTokenTTL
	}
	return &MintCache{signer: s, audience: audience, ttl: ttl, m: map[string]mintedToken{}}
}

// Token returns a token for ac, minting one when none is fresh.
func (c *MintCache) Token(ac Context) (string, error) {
	key, err := json.Marshal([]any{ac.TenantID, ac.Principal, ac.Scopes, ac.Roles, ac.PolicyContext, ac.Actor})
	if err != nil {
		return "", err
	}
	now := c.signer.now()
	c.mu.Lock()
	t, ok := c.m[string(key)]
	c.mu.Unlock()
	if ok && now.Before(t.renew) {
		return t.token, nil
	}
	tok, err := c.signer.Mint(ac, c.audience, c.ttl)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if len(c.m) >= 10000 {
		clear(c.m) // bounded memory
	}
	c.m[string(key)] = mintedToken{token: tok, renew: now.Add(c.ttl / 2)}
	c.mu.Unlock()
	return tok, nil
}

// SignBytes signs msg with the node key (Ed25519): audit checkpoints.
func (s *NodeSigner) SignBytes(msg []byte) []byte { return ed25519.Sign(s.priv, msg) }
