package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/agentorchestrator"
	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/modelpolicy"
)

// testConfig loads a configuration from env (and nothing else) under a
// temporary home.
func testConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	home := t.TempDir()
	vals := map[string]string{"AGENTOS_HOME": home, "AGENTOS_LOG_LEVEL": "error"}
	for k, v := range env {
		vals[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := vals[k]; return v, ok }, filepath.Join(home, "none.env"))
	require.NoError(t, err)
	require.NoError(t, cfg.Finish())
	return cfg
}

func writePublicKey(t *testing.T, dir, name string, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644))
	return p
}

func TestJWTIssuersFromConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	keyFile := writePublicKey(t, dir, "idp.pem", pub)
	secret := filepath.Join(dir, "hs.secret")
	require.NoError(t, os.WriteFile(secret, []byte(strings.Repeat("s", 40)), 0o600))
	short := filepath.Join(dir, "short.secret")
	require.NoError(t, os.WriteFile(short, []byte("shortsecret"), 0o600))
	file := filepath.Join(dir, "issuers.yaml")
	require.NoError(t, os.WriteFile(file, []byte("- issuer: https://file.example\n  audience: [agentos]\n  public_key_files: {k1: idp.pem}\n"), 0o644))

	iss, err := jwtIssuers(testConfig(t, nil))
	require.NoError(t, err)
	require.Empty(t, iss, "nothing configured: no issuers")

	iss, err = jwtIssuers(testConfig(t, map[string]string{"AGENTOS_MODE": "prod", "AGENTOS_JWT_ISSUER": "https://idp.example",
		"AGENTOS_JWT_AUDIENCE": "agentos, agentos-admin", "AGENTOS_JWT_PUBLIC_KEY_FILE": keyFile,
		"AGENTOS_JWT_HS256_SECRET_FILE": secret, "AGENTOS_JWT_ISSUERS_FILE": file}))
	require.NoError(t, err)
	require.Len(t, iss, 2)
	require.Equal(t, "https://file.example", iss[0].Issuer)
	require.Equal(t, pub, iss[0].Keys["k1"])
	require.Equal(t, "https://idp.example", iss[1].Issuer)
	require.Equal(t, []string{"agentos", "agentos-admin"}, iss[1].Audience)
	require.Equal(t, pub, iss[1].Keys[""], "the single public key verifies any kid")
	require.Len(t, iss[1].HS256Secret, 40)

	iss, err = jwtIssuers(testConfig(t, map[string]string{"AGENTOS_JWT_ISSUER": "https://jwks.example",
		"AGENTOS_JWT_JWKS_URL": "https://jwks.example/keys"}))
	require.NoError(t, err)
	require.Equal(t, "https://jwks.example/keys", iss[0].JWKSURL)

	for name, env := range map[string]map[string]string{
		"issuer without keys": {"AGENTOS_JWT_ISSUER": "https://idp.example"},
		"keys without issuer": {"AGENTOS_JWT_PUBLIC_KEY_FILE": keyFile},
		"audience alone":      {"AGENTOS_JWT_AUDIENCE": "agentos"},
		"prod without audience": {"AGENTOS_MODE": "prod", "AGENTOS_JWT_ISSUER": "https://idp.example",
			"AGENTOS_JWT_PUBLIC_KEY_FILE": keyFile},
		"short secret in prod": {"AGENTOS_MODE": "prod", "AGENTOS_JWT_ISSUER": "https://idp.example",
			"AGENTOS_JWT_AUDIENCE": "agentos", "AGENTOS_JWT_HS256_SECRET_FILE": short},
		"prod http jwks": {"AGENTOS_MODE": "prod", "AGENTOS_JWT_ISSUER": "https://idp.example",
			"AGENTOS_JWT_AUDIENCE": "agentos", "AGENTOS_JWT_JWKS_URL": "http://idp.example/keys"},
		"same issuer twice": {"AGENTOS_JWT_ISSUERS_FILE": file, "AGENTOS_JWT_ISSUER": "https://file.example",
			"AGENTOS_JWT_PUBLIC_KEY_FILE": keyFile},
		"missing issuers file": {"AGENTOS_JWT_ISSUERS_FILE": filepath.Join(dir, "absent.yaml")},
		"node issuer reserved": {"AGENTOS_JWT_ISSUER": auth.NodeIssuer, "AGENTOS_JWT_PUBLIC_KEY_FILE": keyFile},
	} {
		_, err := jwtIssuers(testConfig(t, env))
		require.Error(t, err, name)
	}
}

// TestServiceAudiencesAgree: what each service mints is what the receiving
// service's authenticator trusts.
func TestServiceAudiencesAgree(t *testing.T) {
	t.Parallel()
	require.Equal(t, agentorchestrator.ServiceName, federation.OrchestratorAudience,
		"federation mints orchestrator tokens for the orchestrator's audience")
	require.Equal(t, "model-policy", modelpolicy.ServiceName,
		"the orchestrator mints model-policy tokens with audience \"model-policy\" (orchestrator.go)")
}

type authFixture struct {
	cfg    config.Config
	st     *sqlite.DB
	signer *auth.NodeSigner
}

func newAuthFixture(t *testing.T, env map[string]string) authFixture {
	t.Helper()
	cfg := testConfig(t, env)
	st, err := sqlite.OpenURL(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "agentos.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	for _, id := range []string{"tnt_jwt", "tnt_other"} {
		require.NoError(t, st.CreateTenant(context.Background(), store.Tenant{TenantID: id, Name: id, Status: store.TenantActive,
			CreatedAt: now, UpdatedAt: now}))
	}
	signer, err := auth.LoadOrCreateNodeKey(filepath.Join(t.TempDir(), "node.pem"), true)
	require.NoError(t, err)
	return authFixture{cfg: cfg, st: st, signer: signer}
}

// serve authenticates one request with the service's authenticator and
// returns the status and the Auth Context the handler saw.
func (f authFixture) serve(t *testing.T, service, token string) (int, auth.Context) {
	t.Helper()
	a, err := newAuthenticator(f.cfg, f.st, f.signer, service, nil)
	require.NoError(t, err)
	var seen auth.Context
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = auth.From(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}))
	r := httptest.NewRequest(http.MethodGet, "/v1/agents", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, seen
}

// TestOrchestratorAcceptsConfiguredJWT: a JWT signed by an operator's
// static key (AGENTOS_JWT_*) is accepted by the orchestrator's
// authenticator in prod; a wrong audience, another key or an unconfigured
// issuer is refused.
func TestOrchestratorAcceptsConfiguredJWT(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	f := newAuthFixture(t, map[string]string{"AGENTOS_MODE": "prod", "AGENTOS_JWT_ISSUER": "https://idp.example",
		"AGENTOS_JWT_AUDIENCE": "agentos", "AGENTOS_JWT_PUBLIC_KEY_FILE": writePublicKey(t, dir, "idp.pem", &key.PublicKey)})
	mint := func(k *rsa.PrivateKey, kv ...any) string {
		c := jwt.MapClaims{"iss": "https://idp.example", "aud": "agentos", "sub": "usr_jwt", "tenant_id": "tnt_jwt",
			"scope": "agents:read runs:create", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tok.Header["kid"] = "2024-rotation"
		s, err := tok.SignedString(k)
		require.NoError(t, err)
		return s
	}
	code, ac := f.serve(t, agentorchestrator.ServiceName, mint(key))
	require.Equal(t, http.StatusNoContent, code)
	require.Equal(t, "tnt_jwt", ac.TenantID)
	require.Equal(t, "usr_jwt", ac.Principal.PrincipalID)
	require.Equal(t, []string{"agents:read", "runs:create"}, ac.Scopes)
	require.Equal(t, auth.MethodJWT, ac.Method)

	for name, tok := range map[string]string{
		"wrong audience":   mint(key, "aud", "someone-else"),
		"other key":        mint(other),
		"other issuer":     mint(key, "iss", "https://evil.example"),
		"expired":          mint(key, "exp", time.Now().Add(-time.Hour).Unix()),
		"unknown tenant":   mint(key, "tenant_id", "tnt_nope"),
		"HS256 confusion":  hs256(t, "https://idp.example"),
		"alg none refused": unsigned("https://idp.example"),
	} {
		code, _ := f.serve(t, agentorchestrator.ServiceName, tok)
		require.Equal(t, http.StatusUnauthorized, code, name)
	}
}

func hs256(t *testing.T, iss string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": iss, "aud": "agentos", "sub": "usr_x",
		"tenant_id": "tnt_jwt", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(strings.Repeat("k", 32)))
	require.NoError(t, err)
	return s
}

func unsigned(iss string) string {
	s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": iss, "aud": "agentos", "sub": "usr_x",
		"tenant_id": "tnt_jwt", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	return s
}

// TestNodeTokensBoundToService: each service's authenticator accepts node
// tokens minted for it and refuses those minted for another service.
func TestNodeTokensBoundToService(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t, map[string]string{"AGENTOS_MODE": "prod"})
	services := []string{agentorchestrator.ServiceName, modelpolicy.ServiceName, federation.ServiceName}
	ac := auth.Context{TenantID: "tnt_jwt", Principal: auth.Principal{PrincipalID: "usr_run_owner"},
		Scopes: []string{auth.ScopeModelsInvoke}, Roles: []string{auth.RoleTenantUser}}
	for _, aud := range services {
		tok, err := f.signer.Mint(ac, aud, time.Minute)
		require.NoError(t, err)
		for _, svc := range services {
			code, seen := f.serve(t, svc, tok)
			if svc == aud {
				require.Equal(t, http.StatusNoContent, code, "%s accepts a token minted for %s", svc, aud)
				require.Equal(t, "usr_run_owner", seen.Principal.PrincipalID)
			} else {
				require.Equal(t, http.StatusUnauthorized, code, "%s refuses a token minted for %s", svc, aud)
			}
		}
	}
	_, err := newAuthenticator(f.cfg, f.st, f.signer, "", nil)
	require.Error(t, err)
}

func TestFederationClientTLSConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	_, _, err := pki.InitCA(caDir)
	require.NoError(t, err)
	_, err = pki.IssueNodeCert(caDir, "stk_node", nil, filepath.Join(dir, "node"))
	require.NoError(t, err)
	_, err = pki.IssueNodeCert(caDir, "stk_client_api", nil, filepath.Join(dir, "api"))
	require.NoError(t, err)
	nt, err := pki.LoadNodeTLS(filepath.Join(dir, "node", pki.CAFile), filepath.Join(dir, "node", pki.NodeFile),
		filepath.Join(dir, "node", pki.NodeKeyFile))
	require.NoError(t, err)

	c, err := federationClientTLS(testConfig(t, nil), nt)
	require.NoError(t, err)
	require.Nil(t, c, "demo: plain HTTP")
	c, err = federationClientTLS(testConfig(t, map[string]string{"AGENTOS_MODE": "dev"}), nt)
	require.NoError(t, err)
	require.Nil(t, c, "dev: plain HTTP")

	c, err = federationClientTLS(testConfig(t, map[string]string{"AGENTOS_MODE": "prod"}), nt)
	require.NoError(t, err)
	require.Equal(t, tls.NoClientCert, c.ClientAuth)
	require.Equal(t, nt.Cert.Certificate[0], c.Certificates[0].Certificate[0], "the node certificate by default")

	c, err = federationClientTLS(testConfig(t, map[string]string{"AGENTOS_MODE": "prod",
		"AGENTOS_FEDERATION_CLIENT_CERT_FILE": filepath.Join(dir, "api", pki.NodeFile),
		"AGENTOS_FEDERATION_CLIENT_KEY_FILE":  filepath.Join(dir, "api", pki.NodeKeyFile)}), nt)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(c.Certificates[0].Certificate[0])
	require.NoError(t, err)
	require.Equal(t, "stk_client_api", pki.StackIDOf(leaf))

	_, err = federationClientTLS(testConfig(t, map[string]string{"AGENTOS_MODE": "prod",
		"AGENTOS_FEDERATION_CLIENT_CERT_FILE": filepath.Join(dir, "api", pki.NodeFile)}), nt)
	require.ErrorContains(t, err, "both")
	_, err = federationClientTLS(testConfig(t, map[string]string{"AGENTOS_MODE": "prod",
		"AGENTOS_FEDERATION_CLIENT_CERT_FILE": filepath.Join(dir, "api", pki.NodeFile),
		"AGENTOS_FEDERATION_CLIENT_KEY_FILE":  filepath.Join(dir, "node", pki.NodeKeyFile)}), nt)
	require.Error(t, err, "a key that does not match the certificate")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunFederationProdServesClientAPIOverTLS runs the federation service
// in prod: the client API answers over TLS with the node certificate,
// without asking for a client certificate (callers authenticate with
// credentials: no credential is 401, not a handshake failure), and a
// plain-HTTP request is not served.
func TestRunFederationProdServesClientAPIOverTLS(t *testing.T) {
	cfg := testConfig(t, map[string]string{"AGENTOS_MODE": "prod", "AGENTOS_STACK_ID": "stk_prod_a",
		"AGENTOS_FEDERATION_ADDR": freeAddr(t), "AGENTOS_FEDERATION_PEER_ADDR": freeAddr(t),
		"AGENTOS_ORCHESTRATOR_ADDR": freeAddr(t)})
	// Prod generates nothing: provision the node key and federation identity.
	_, err := auth.LoadOrCreateNodeKey(cfg.NodeKeyPath(), true)
	require.NoError(t, err)
	files := federation.FilesIn(cfg.Home)
	_, err = federation.EnsureIdentity(files, cfg.StackID, files.CADir, nil)
	require.NoError(t, err)
	nt, err := pki.LoadNodeTLS(files.CA, files.Cert, files.Key)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunFederation(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: nt.CAs, MinVersion: tls.VersionTLS12}}}
	base := "https://" + cfg.FederationAddr
	var resp *http.Response
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("RunFederation ended: %v", err)
		default:
		}
		resp, err = client.Get(base + "/v1/federation/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}, 20*time.Second, 50*time.Millisecond)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, err = client.Get(base + "/v1/federation/peer")
	require.NoError(t, err, "no client certificate is required")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(body))
	var env struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &env))
	require.Equal(t, "unauthorized", env.Error.Code)

	plain, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + cfg.FederationAddr + "/v1/federation/health")
	if err == nil {
		b, _ := io.ReadAll(plain.Body)
		plain.Body.Close()
		require.NotEqual(t, http.StatusOK, plain.StatusCode, "plain HTTP is not served in prod: %s", b)
	} else {
		require.False(t, errors.Is(err, context.DeadlineExceeded))
	}
}
