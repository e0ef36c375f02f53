package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// TestAuthConfiguredIssuerAndPlatformAdmin starts a real orchestrator with
// a JWT issuer configured through AGENTOS_JWT_ISSUER, AGENTOS_JWT_AUDIENCE
// and AGENTOS_JWT_PUBLIC_KEY_FILE: a JWT signed with that key is accepted,
// others are refused. Then the platform admin disables the tenant that
// holds its own credential and is not locked out: it re-enables it.
func TestAuthConfiguredIssuerAndPlatformAdmin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "idp.pem")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644))
	n := testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}, Env: []string{
		"AGENTOS_JWT_ISSUER=https://idp.example", "AGENTOS_JWT_AUDIENCE=agentos", "AGENTOS_JWT_PUBLIC_KEY_FILE=" + keyFile}})
	orch := n.URL("orchestrator")

	mint := func(aud string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp.example", "aud": aud,
			"sub": "usr_idp_alice", "tenant_id": "tnt_demo", "scope": "agents:read runs:read",
			"iat": time.Now().Unix(), "exp": time.Now().Add(10 * time.Minute).Unix()}).SignedString(key)
		require.NoError(t, err)
		return tok
	}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	code, _, body := fedDo(t, nil, "GET", orch+"/v1/agents", bearer(mint("agentos")), nil)
	require.Equal(t, http.StatusOK, code, "a JWT from the configured issuer: %s\n%s", body, n.Log("orchestrator"))
	require.Contains(t, string(body), "agt_sample_echo_v1")
	code, _, body = fedDo(t, nil, "GET", orch+"/v1/agents", bearer(mint("someone-else")), nil)
	require.Equal(t, http.StatusUnauthorized, code, string(body))
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	forged, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp.example", "aud": "agentos",
		"sub": "usr_x", "tenant_id": "tnt_demo", "exp": time.Now().Add(time.Minute).Unix()}).SignedString(other)
	require.NoError(t, err)
	code, _, body = fedDo(t, nil, "GET", orch+"/v1/agents", bearer(forged), nil)
	require.Equal(t, http.StatusUnauthorized, code, string(body))

	// The platform admin's credential lives in tnt_demo; disabling tnt_demo
	// does not lock it out.
	admin := bearer(n.Credentials().PlatformAdmin.Token)
	patch := func(status string) {
		t.Helper()
		code, _, body := fedDo(t, nil, "PATCH", orch+"/v1/admin/tenants/tnt_demo", admin, map[string]any{"status": status})
		require.Equal(t, http.StatusOK, code, string(body))
		var out struct {
			Tenant struct {
				Status string `json:"status"`
			} `json:"tenant"`
		}
		require.NoError(t, json.Unmarshal(body, &out))
		require.Equal(t, status, out.Tenant.Status)
	}
	patch("disabled")
	code, _, body = fedDo(t, nil, "GET", orch+"/v1/agents", bearer(mint("agentos")), nil)
	require.Equal(t, http.StatusForbidden, code, "the disabled tenant is forbidden: %s", body)
	code, _, body = fedDo(t, nil, "GET", orch+"/v1/admin/tenants/tnt_demo", admin, nil)
	require.Equal(t, http.StatusOK, code, "the platform admin still administers it: %s", body)
	patch("active")
	code, _, body = fedDo(t, nil, "GET", orch+"/v1/agents", bearer(mint("agentos")), nil)
	require.Equal(t, http.StatusOK, code, string(body))
}
