package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// SecretPrefix starts every API token secret.
const SecretPrefix = "agt_sk_"

// TokenIDPrefix starts every API token id.
const TokenIDPrefix = "tok_"

// AllRoles lists every role.
var AllRoles = []string{RolePlatformAdmin, RoleTenantAdmin, RoleTenantUser, RoleTenantService}

// HashSecret returns the stored form of a token secret: SHA-256, hex.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// NewSecret returns a new API token secret: "agt_sk_" + 32 random bytes,
// base64url without padding.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// TokenCreator stores new tokens (store.Store satisfies it).
type TokenCreator interface {
	CreateToken(ctx context.Context, tok store.Token) error
}

// IssueParams describes a token to issue.
type IssueParams struct {
	TenantID    string
	PrincipalID string
	Scopes      []string
	Roles       []string
	ExpiresAt   *time.Time // nil: never expires
	Now         time.Time  // zero: time.Now()
}

// ValidateScopes returns an invalid_request naming field when a scope is
// not one of AllScopes.
func ValidateScopes(field string, scopes []string) error {
	for i, s := range scopes {
		if !slices.Contains(AllScopes, s) {
			return errs.Field(field, "unknown scope %q at index %d (want one of %s)", s, i, strings.Join(AllScopes, " "))
		}
	}
	return nil
}

// ValidateRoles returns an invalid_request naming field when a role is not
// one of AllRoles.
func ValidateRoles(field string, roles []string) error {
	for i, r := range roles {
		if !slices.Contains(AllRoles, r) {
			return errs.Field(field, "unknown role %q at index %d (want one of %s)", r, i, strings.Join(AllRoles, " "))
		}
	}
	return nil
}

// IssueToken validates p, makes a new secret and stores its token (only the
// hash). It returns the stored token and the secret, which is shown once
// and never stored. Errors: invalid_request naming the field, or the
// store's error.
func IssueToken(ctx context.Context, st TokenCreator, p IssueParams) (store.Token, string, error) {
	if p.TenantID == "" {
		return store.Token{}, "", errs.Field("tenant_id", "required")
	}
	if p.PrincipalID == "" {
		return store.Token{}, "", errs.Field("principal_id", "required")
	}
	if !tenantHeaderRE.MatchString(p.PrincipalID) {
		return store.Token{}, "", errs.Field("principal_id", "want 1-128 of A-Z a-z 0-9 _ . : -")
	}
	if err := ValidateScopes("scopes", p.Scopes); err != nil {
		return store.Token{}, "", err
	}
	if err := ValidateRoles("roles", p.Roles); err != nil {
		return store.Token{}, "", err
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	if p.ExpiresAt != nil && !p.ExpiresAt.After(now) {
		return store.Token{}, "", errs.Field("expires_at", "must be in the future")
	}
	secret := NewSecret()
	tok := store.Token{
		TokenID:     ids.New(TokenIDPrefix),
		TenantID:    p.TenantID,
		PrincipalID: p.PrincipalID,
		SecretHash:  HashSecret(secret),
		Scopes:      append([]string{}, p.Scopes...),
		Roles:       append([]string{}, p.Roles...),
		CreatedAt:   now,
	}
	if p.ExpiresAt != nil {
		exp := p.ExpiresAt.UTC()
		tok.ExpiresAt = &exp
	}
	if err := st.CreateToken(ctx, tok); err != nil {
		return store.Token{}, "", err
	}
	return tok, secret, nil
}
