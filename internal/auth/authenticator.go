package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
)

// Modes the Authenticator understands (the same strings as config.Mode*).
const (
	ModeDemo = "demo"
	ModeDev  = "dev"
	ModeProd = "prod"
)

// Principals the Authenticator makes up itself.
const (
	// BootstrapPrincipalID is the principal of AGENTOS_BOOTSTRAP_ADMIN_TOKEN.
	BootstrapPrincipalID = "usr_bootstrap_admin"
	// AnonymousPrincipalID is the principal of a demo/dev X-Tenant-Id caller
	// that sends no X-Principal-Id.
	AnonymousPrincipalID = "usr_anonymous"
)

// MinBootstrapTokenLen is the shortest accepted bootstrap admin token.
const MinBootstrapTokenLen = 32

// Request headers read by the Authenticator.
const (
	HeaderAuthorization = "Authorization"
	HeaderAPIKey        = "X-API-Key"
	HeaderTenantID      = "X-Tenant-Id"
	HeaderPrincipalID   = "X-Principal-Id"
)

// TenantLookup finds tenants (store.Store satisfies it).
type TenantLookup interface {
	GetTenant(ctx context.Context, tenantID string) (store.Tenant, error)
}

// TokenLookup finds API tokens by the hash of their secret (store.Store
// satisfies it).
type TokenLookup interface {
	TokenBySecretHash(ctx context.Context, hash string) (store.Token, error)
}

// Config configures an Authenticator.
type Config struct {
	// Mode is demo, dev or prod. Header-only (X-Tenant-Id) callers are
	// accepted only in demo and dev. Required.
	Mode string
	// Tenants resolves the tenant of every request. Required.
	Tenants TenantLookup
	// Tokens resolves opaque API tokens. Nil refuses every API token.
	Tokens TokenLookup
	// Issuers are the trusted JWT issuers: the operator's (LoadIssuersFile,
	// IssuerSpec.Load) and NodeSigner.IssuerFor(service) so that a service
	// trusts the node's tokens minted for it.
	Issuers []Issuer
	// BootstrapToken, when set (at least MinBootstrapTokenLen characters),
	// authenticates as the platform admin usr_bootstrap_admin.
	BootstrapToken string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// HTTPClient fetches JWKS documents; default NewJWKSClient with
	// outbound's default bounds.
	HTTPClient *http.Client
	// OnFailure, if set, is told the error code of every failed
	// authentication done by Middleware (for the auth-failure metric).
	OnFailure func(code string)
}

// Authenticator turns a request's credentials into an Auth Context
// (CONTRACT §3). It is safe for concurrent use.
type Authenticator struct {
	cfg      Config
	issuers  map[string]*issuerState
	verified verifiedCache
}

// New validates cfg and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	switch cfg.Mode {
	case ModeDemo, ModeDev, ModeProd:
	default:
		return nil, fmt.Errorf("auth: invalid mode %q: want demo, dev or prod", cfg.Mode)
	}
	if cfg.Tenants == nil {
		return nil, errors.New("auth: Config.Tenants is required")
	}
	if cfg.BootstrapToken != "" && len(cfg.BootstrapToken) < MinBootstrapTokenLen {
		return nil, fmt.Errorf("auth: bootstrap admin token must be at least %d characters", MinBootstrapTokenLen)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = NewJWKSClient(outbound.Timeouts{})
	}
	a := &Authenticator{cfg: cfg, issuers: map[string]*issuerState{}}
	for i, iss := range cfg.Issuers {
		st, err := newIssuerState(iss, cfg.HTTPClient, cfg.Now)
		if err != nil {
			return nil, fmt.Errorf("auth: issuers[%d]: %w", i, err)
		}
		if _, dup := a.issuers[iss.Issuer]; dup {
			return nil, fmt.Errorf("auth: issuers[%d]: issuer %q configured twice", i, iss.Issuer)
		}
		a.issuers[iss.Issuer] = st
	}
	return a, nil
}

// tenantHeaderRE bounds what X-Tenant-Id / X-Principal-Id may contain.
var tenantHeaderRE = regexp.MustCompile(`^[A-Za-z0-9_.:\-]{1,128}$`)

// Authenticate derives the request's Auth Context (CONTRACT §3):
//
//  1. Authorization: Bearer <JWT> verified against the configured issuers;
//  2. Authorization: Bearer <api token> or X-API-Key: <api token>, or the
//     bootstrap admin token;
//  3. X-Tenant-Id (+ X-Principal-Id) alone, in demo/dev mode only.
//
// With a credential, X-Tenant-Id selects a tenant only for a
// platform_admin; anyone else naming another tenant gets forbidden. The
// tenant the request acts in must exist (else unauthorized) and be active
// (else forbidden). A platform_admin that sends no X-Tenant-Id acts in its
// credential's home tenant while that tenant is active, and otherwise (no
// home tenant, or a disabled or deleted one) gets an empty TenantID: it may
// then use platform-wide admin endpoints only. Errors are *errs.Error (unauthorized, forbidden, or
// dependency_unavailable when the store or a JWKS endpoint is down).
func (a *Authenticator) Authenticate(r *http.Request) (Context, error) {
	ctx := r.Context()
	cred, err := credential(r.Header)
	if err != nil {
		return Context{}, err
	}
	headerTenant, err := optionalHeader(r.Header, HeaderTenantID)
	if err != nil {
		return Context{}, err
	}
	if cred == "" {
		return a.headerOnly(ctx, r.Header, headerTenant)
	}

	var ac Context
	switch {
	case a.isBootstrap(cred):
		ac = Context{
			Principal: Principal{PrincipalID: BootstrapPrincipalID, PrincipalType: "user", DisplayName: "bootstrap admin"},
			Scopes:    append([]string(nil), AllScopes...),
			Roles:     []string{RolePlatformAdmin},
			Method:    MethodToken,
		}
	case a.verifiedHit(cred, &ac):
	case LooksLikeJWT(cred):
		ac, err = a.verifyJWT(ctx, cred)
	default:
		ac, err = a.lookupToken(ctx, cred)
	}
	if err != nil {
		return Context{}, err
	}

	if ac.HasRole(RolePlatformAdmin) {
		return a.platformTenant(ctx, ac, headerTenant)
	}
	if headerTenant != "" && headerTenant != ac.TenantID {
		return Context{}, errs.E(errs.Forbidden,
			"X-Tenant-Id %q differs from the credential's tenant %q; only a platform_admin may select a tenant",
			headerTenant, ac.TenantID)
	}
	if ac.TenantID == "" {
		return Context{}, errs.E(errs.Unauthorized, "credential names no tenant (tenant_id claim missing)")
	}
	if err := a.checkTenant(ctx, ac.TenantID); err != nil {
		return Context{}, err
	}
	return ac, nil
}

// platformTenant picks the tenant a platform_admin acts in. Only that
// tenant is checked, never the credential's home tenant as such:
//
//   - with X-Tenant-Id, the named tenant, which must exist and be active;
//   - without it, the credential's home tenant when it exists and is
//     active, else platform scope (empty TenantID).
//
// So disabling the tenant that holds the admin's credential never locks
// the platform admin out: it keeps the platform-wide admin endpoints and
// can re-enable that tenant (PATCH /v1/admin/tenants/{id} without
// X-Tenant-Id), while tenant-scoped endpoints of a disabled tenant stay
// forbidden for everyone.
func (a *Authenticator) platformTenant(ctx context.Context, ac Context, headerTenant string) (Context, error) {
	if headerTenant != "" {
		ac.TenantID = headerTenant
		if err := a.checkTenant(ctx, headerTenant); err != nil {
			return Context{}, err
		}
		return ac, nil
	}
	if ac.TenantID == "" {
		return ac, nil // platform scope: no tenant selected
	}
	if err := a.checkTenant(ctx, ac.TenantID); err != nil {
		switch errs.CodeOf(err) {
		case errs.Forbidden, errs.Unauthorized:
			// Home tenant disabled or gone: act at platform scope.
			ac.TenantID = ""
			return ac, nil
		}
		return Context{}, err
	}
	return ac, nil
}

// headerOnly handles a request without credentials.
func (a *Authenticator) headerOnly(ctx context.Context, h http.Header, tenantID string) (Context, error) {
	if tenantID == "" {
		if a.cfg.Mode != ModeProd {
			// Demo/dev accept a tenant header alone: say so, since that is
			// what a new user following the curl examples is missing.
			return Context{}, errs.E(errs.Unauthorized,
				"missing credentials: send X-Tenant-Id: <tenant_id> (accepted alone in %s mode, e.g. X-Tenant-Id: tnt_demo), or Authorization: Bearer <token> or X-API-Key", a.cfg.Mode)
		}
		return Context{}, errs.E(errs.Unauthorized,
			"missing credentials: send Authorization: Bearer <token> or X-API-Key")
	}
	if a.cfg.Mode == ModeProd {
		return Context{}, errs.E(errs.Unauthorized,
			"X-Tenant-Id without a credential is refused in prod mode: send Authorization: Bearer <token> or X-API-Key")
	}
	principal, err := optionalHeader(h, HeaderPrincipalID)
	if err != nil {
		return Context{}, err
	}
	if principal == "" {
		principal = AnonymousPrincipalID
	} else if ReservedPrincipal(principal) {
		// Audit records would name the platform's principal.
		return Context{}, errs.Field(HeaderPrincipalID, "%q is reserved for the platform", principal)
	}
	if err := a.checkTenant(ctx, tenantID); err != nil {
		return Context{}, err
	}
	return Context{
		TenantID:  tenantID,
		Principal: Principal{PrincipalID: principal, PrincipalType: principalTypeOf(principal, "", nil)},
		Scopes:    append([]string(nil), HeaderUserScopes...),
		Roles:     []string{RoleTenantUser},
		Method:    MethodHeader,
	}, nil
}

// checkTenant requires tenantID to exist and be active.
func (a *Authenticator) checkTenant(ctx context.Context, tenantID string) error {
	t, err := a.cfg.Tenants.GetTenant(ctx, tenantID)
	if err != nil {
		if errors.Is(err, errs.ErrNotFound) {
			return errs.E(errs.Unauthorized, "unknown tenant %q", tenantID)
		}
		return errs.Wrap(errs.DependencyUnavailable, err, "cannot look up tenant %q", tenantID)
	}
	if t.Status != store.TenantActive {
		return errs.E(errs.Forbidden, "tenant %q is %s", tenantID, t.Status)
	}
	return nil
}

func (a *Authenticator) isBootstrap(cred string) bool {
	b := a.cfg.BootstrapToken
	return b != "" && subtle.ConstantTimeCompare([]byte(cred), []byte(b)) == 1
}

// lookupToken resolves an opaque API token.
func (a *Authenticator) lookupToken(ctx context.Context, secret string) (Context, error) {
	if a.cfg.Tokens == nil {
		return Context{}, errs.E(errs.Unauthorized, "invalid API token")
	}
	tok, err := a.cfg.Tokens.TokenBySecretHash(ctx, HashSecret(secret))
	if err != nil {
		if errors.Is(err, errs.ErrNotFound) {
			return Context{}, errs.E(errs.Unauthorized, "invalid API token")
		}
		return Context{}, errs.Wrap(errs.DependencyUnavailable, err, "cannot look up API token")
	}
	now := a.cfg.Now()
	if tok.RevokedAt != nil {
		return Context{}, errs.E(errs.Unauthorized, "API token %s was revoked", tok.TokenID)
	}
	if tok.ExpiresAt != nil && !now.Before(*tok.ExpiresAt) {
		return Context{}, errs.E(errs.Unauthorized, "API token %s expired at %s", tok.TokenID,
			tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
	roles := append([]string(nil), tok.Roles...)
	if len(roles) == 0 {
		roles = []string{RoleTenantUser}
	}
	return Context{
		TenantID:  tok.TenantID,
		Principal: Principal{PrincipalID: tok.PrincipalID, PrincipalType: principalTypeOf(tok.PrincipalID, "", roles)},
		Scopes:    append([]string{}, tok.Scopes...),
		Roles:     roles,
		Session:   map[string]any{"token_id": tok.TokenID},
		Method:    MethodToken,
	}, nil
}

// principalTypeOf picks "service" or "user": an explicit claim wins, then
// the tenant_service role, then the svc_ id prefix.
func principalTypeOf(principalID, claimed string, roles []string) string {
	switch claimed {
	case "user", "service":
		return claimed
	}
	for _, r := range roles {
		if r == RoleTenantService {
			return "service"
		}
	}
	if strings.HasPrefix(principalID, "svc_") {
		return "service"
	}
	return "user"
}

// credential extracts the credential from Authorization or X-API-Key. "" when
// neither is present.
func credential(h http.Header) (string, error) {
	authz, err := optionalRawHeader(h, HeaderAuthorization)
	if err != nil {
		return "", err
	}
	key, err := optionalRawHeader(h, HeaderAPIKey)
	if err != nil {
		return "", err
	}
	var bearer string
	if authz != "" {
		bearer, err = ParseBearer(authz)
		if err != nil {
			return "", err
		}
	}
	switch {
	case bearer != "" && key != "" && bearer != key:
		return "", errs.E(errs.Unauthorized, "Authorization and X-API-Key carry different credentials; send one")
	case bearer != "":
		return bearer, nil
	default:
		return key, nil
	}
}

// ParseBearer returns the credential of an "Authorization: Bearer <cred>"
// header value. The scheme is case-insensitive; anything else (Basic, an
// empty credential, embedded spaces) is an unauthorized error.
func ParseBearer(v string) (string, error) {
	v = strings.TrimSpace(v)
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errs.E(errs.Unauthorized, "Authorization: want \"Bearer <token>\"")
	}
	cred = strings.TrimSpace(cred)
	if cred == "" || strings.ContainsAny(cred, " \t") {
		return "", errs.E(errs.Unauthorized, "Authorization: want \"Bearer <token>\" with one token")
	}
	if len(cred) > 16<<10 {
		return "", errs.E(errs.Unauthorized, "Authorization: token longer than 16 KiB")
	}
	return cred, nil
}

// optionalRawHeader returns a header's trimmed value, refusing repeats.
func optionalRawHeader(h http.Header, name string) (string, error) {
	vs := h.Values(name)
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
		return strings.TrimSpace(vs[0]), nil
	}
	return "", errs.E(errs.Unauthorized, "%s: header given %d times; send it once", name, len(vs))
}

// optionalHeader is optionalRawHeader for id-valued headers.
func optionalHeader(h http.Header, name string) (string, error) {
	v, err := optionalRawHeader(h, name)
	if err != nil || v == "" {
		return v, err
	}
	if !tenantHeaderRE.MatchString(v) {
		return "", errs.E(errs.Unauthorized, "%s: malformed id (want 1-128 of A-Z a-z 0-9 _ . : -)", name)
	}
	return v, nil
}

// Middleware authenticates every request, stores the Auth Context in the
// request context (see From), records the tenant for the access log, and
// answers failures with the error envelope (401 also carries
// WWW-Authenticate). Mount it on the API routes only, not on health or
// metrics.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ac, err := a.Authenticate(r)
		if err != nil {
			code := errs.CodeOf(err)
			if a.cfg.OnFailure != nil {
				a.cfg.OnFailure(string(code))
			}
			if code == errs.Unauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="agentos"`)
			}
			httpx.WriteError(w, r, err)
			return
		}
		ctx := With(r.Context(), ac)
		httpx.SetLogTenant(ctx, ac.TenantID, ac.Principal.PrincipalID)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Require returns ctx's Auth Context if it holds scope; forbidden naming the
// missing scope otherwise, unauthorized when ctx carries no Auth Context.
func Require(ctx context.Context, scope string) (Context, error) {
	ac, ok := From(ctx)
	if !ok {
		return Context{}, errs.E(errs.Unauthorized, "request is not authenticated")
	}
	if !ac.HasScope(scope) {
		return Context{}, errs.E(errs.Forbidden, "missing scope %q", scope).
			WithDetails(map[string]any{"required_scope": scope})
	}
	return ac, nil
}

// verifiedHit fills ac from the verified-JWT cache.
func (a *Authenticator) verifiedHit(cred string, ac *Context) bool {
	c, ok := a.verified.get(cred, a.cfg.Now())
	if ok {
		*ac = c
	}
	return ok
}

// JWKSFetchTimeout bounds a whole JWKS fetch: a small document, never
// streamed, so an overall client timeout is right here.
const JWKSFetchTimeout = 5 * time.Second

// NewJWKSClient is the client fetching issuers' JWKS documents: outbound's
// bounds t, JWKSFetchTimeout overall, and the proxy of HTTPS_PROXY /
// NO_PROXY (identity providers are often reached through one).
func NewJWKSClient(t outbound.Timeouts) *http.Client {
	c := outbound.Client(t, nil)
	c.Transport.(*http.Transport).Proxy = http.ProxyFromEnvironment
	c.Timeout = JWKSFetchTimeout
	return c
}
