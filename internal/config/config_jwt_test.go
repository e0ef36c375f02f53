package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLoadJWTAndClientTLSVariables: the JWT issuer and federation client
// TLS variables load from the environment and from .agentos.env, the
// environment winning.
func TestLoadJWTAndClientTLSVariables(t *testing.T) {
	t.Parallel()
	envFile := filepath.Join(t.TempDir(), ".agentos.env")
	require.NoError(t, os.WriteFile(envFile, []byte(
		"AGENTOS_JWT_ISSUER=https://file.example\nAGENTOS_JWT_AUDIENCE=from-file\nAGENTOS_JWT_HS256_SECRET_FILE=/run/hs\n"), 0o600))
	env := map[string]string{
		"AGENTOS_JWT_ISSUERS_FILE":            "/etc/agentos/issuers.yaml",
		"AGENTOS_JWT_AUDIENCE":                "agentos",
		"AGENTOS_JWT_JWKS_URL":                "https://idp.example/jwks",
		"AGENTOS_JWT_PUBLIC_KEY_FILE":         "/etc/agentos/idp.pem",
		"AGENTOS_FEDERATION_CLIENT_CERT_FILE": "/etc/agentos/api.pem",
		"AGENTOS_FEDERATION_CLIENT_KEY_FILE":  "/etc/agentos/api-key.pem",
	}
	c, err := Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, envFile)
	require.NoError(t, err)
	require.Equal(t, "/etc/agentos/issuers.yaml", c.JWTIssuersFile)
	require.Equal(t, "https://file.example", c.JWTIssuer)
	require.Equal(t, "agentos", c.JWTAudience, "the environment wins over the file")
	require.Equal(t, "https://idp.example/jwks", c.JWTJWKSURL)
	require.Equal(t, "/etc/agentos/idp.pem", c.JWTPublicKeyFile)
	require.Equal(t, "/run/hs", c.JWTHS256SecretFile)
	require.Equal(t, "/etc/agentos/api.pem", c.FederationClientCertFile)
	require.Equal(t, "/etc/agentos/api-key.pem", c.FederationClientKeyFile)

	c, err = Load(func(string) (string, bool) { return "", false }, filepath.Join(t.TempDir(), "absent.env"))
	require.NoError(t, err)
	require.Empty(t, c.JWTIssuer+c.JWTIssuersFile+c.JWTAudience+c.JWTJWKSURL+c.JWTPublicKeyFile+c.JWTHS256SecretFile)
}
