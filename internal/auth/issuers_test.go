package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644))
	return p
}

func pkixDER(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	return der
}

func TestParseIssuersYAML(t *testing.T) {
	t.Parallel()
	list := `
- issuer: https://a.example
  audience: agentos
  jwks_url: https://a.example/jwks.json
- issuer: https://b.example
  audience: [agentos, other]
  public_key_files: {k1: b.pem, "": any.pem}
  hs256_secret_file: /run/secrets/hs
`
	specs, err := ParseIssuersYAML([]byte(list))
	require.NoError(t, err)
	require.Len(t, specs, 2)
	require.Equal(t, StringList{"agentos"}, specs[0].Audience)
	require.Equal(t, "https://a.example/jwks.json", specs[0].JWKSURL)
	require.Equal(t, StringList{"agentos", "other"}, specs[1].Audience)
	require.Equal(t, map[string]string{"k1": "b.pem", "": "any.pem"}, specs[1].PublicKeyFiles)
	require.Equal(t, "/run/secrets/hs", specs[1].HS256SecretFile)

	specs, err = ParseIssuersYAML([]byte("# comment\nissuers:\n  - issuer: https://c.example\n    jwks_url: https://c.example/k\n"))
	require.NoError(t, err)
	require.Len(t, specs, 1)
	require.Equal(t, "https://c.example", specs[0].Issuer)

	for name, doc := range map[string]string{
		"empty":               "",
		"comment only":        "# nothing\n",
		"empty list":          "[]",
		"empty mapping":       "issuers: []",
		"scalar":              "hello",
		"unknown field":       "- issuer: x\n  jwks: https://x/\n",
		"unknown top field":   "issuers: []\nextra: 1\n",
		"audience is a map":   "- issuer: x\n  audience: {a: b}\n",
		"keys is a list":      "- issuer: x\n  public_key_files: [a.pem]\n",
		"malformed yaml":      "- issuer: [x\n",
		"issuer is a mapping": "- issuer: {a: 1}\n",
	} {
		_, err := ParseIssuersYAML([]byte(doc))
		require.Error(t, err, name)
	}
}

func TestParsePublicKeyPEM(t *testing.T) {
	t.Parallel()
	testKeys(t)
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)

	for name, tc := range map[string]struct {
		typ string
		der []byte
		alg string
	}{
		"rsa pkix":  {"PUBLIC KEY", pkixDER(t, &rsaKey.PublicKey), "RS256"},
		"rsa pkcs1": {"RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey), "RS256"},
		"ec p256":   {"PUBLIC KEY", pkixDER(t, &p256.PublicKey), "ES256"},
		"ed25519":   {"PUBLIC KEY", pkixDER(t, edPub), "EdDSA"},
	} {
		k, err := ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: tc.typ, Bytes: tc.der}))
		require.NoError(t, err, name)
		algs, err := algsForKey(k)
		require.NoError(t, err)
		require.Contains(t, algs, tc.alg, name)
	}

	// A certificate gives its public key.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, edPub, edKey)
	require.NoError(t, err)
	k, err := ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	require.NoError(t, err)
	require.Equal(t, edPub, k)

	privDER, err := x509.MarshalPKCS8PrivateKey(edKey)
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		in  []byte
		msg string
	}{
		"not pem":     {[]byte("hello"), "no PEM block"},
		"private key": {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), "never the private one"},
		"small rsa":   {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkixDER(t, &small.PublicKey)}), "2048"},
		"garbage der": {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}), "PUBLIC KEY"},
		"other type":  {pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: []byte{1}}), "unsupported PEM block"},
	} {
		_, err := ParsePublicKeyPEM(tc.in)
		require.ErrorContains(t, err, tc.msg, name)
	}
}

func TestIssuerSpecLoad(t *testing.T) {
	t.Parallel()
	testKeys(t)
	dir := t.TempDir()
	writePEM(t, dir, "rsa.pem", "PUBLIC KEY", pkixDER(t, &rsaKey.PublicKey))
	edPath := writePEM(t, dir, "ed.pem", "PUBLIC KEY", pkixDER(t, edPub))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hs.secret"), append(append([]byte{}, hsSecret...), '\n'), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "short.secret"), []byte("too-short-secret\n"), 0o600))

	iss, err := IssuerSpec{Issuer: "https://idp.example", Audience: StringList{"agentos"},
		PublicKeyFiles: map[string]string{"r1": "rsa.pem", "": edPath}, HS256SecretFile: "hs.secret"}.
		Load(IssuerLoadOptions{Prod: true, BaseDir: dir})
	require.NoError(t, err)
	require.Equal(t, []string{"agentos"}, iss.Audience)
	require.Equal(t, &rsaKey.PublicKey, iss.Keys["r1"])
	require.Equal(t, edPub, iss.Keys[""])
	require.Equal(t, hsSecret, iss.HS256Secret, "trailing newline trimmed")

	// Demo/dev: no audience needed, http JWKS allowed.
	iss, err = IssuerSpec{Issuer: "http://idp.dev", JWKSURL: "http://idp.dev/jwks"}.Load(IssuerLoadOptions{})
	require.NoError(t, err)
	require.Empty(t, iss.Audience)
	// Prod: http JWKS only on loopback.
	_, err = IssuerSpec{Issuer: "x", Audience: StringList{"a"}, JWKSURL: "http://127.0.0.1:8080/jwks"}.Load(IssuerLoadOptions{Prod: true})
	require.NoError(t, err)

	refusals := map[string]struct {
		spec IssuerSpec
		prod bool
		msg  string
	}{
		"no issuer":           {IssuerSpec{JWKSURL: "https://x/"}, false, "issuer: is required"},
		"reserved issuer":     {IssuerSpec{Issuer: NodeIssuer, JWKSURL: "https://x/"}, false, "reserved"},
		"no keys":             {IssuerSpec{Issuer: "x", Audience: StringList{"a"}}, false, "set jwks_url"},
		"prod without aud":    {IssuerSpec{Issuer: "x", JWKSURL: "https://x/"}, true, "audience: is required in prod"},
		"empty aud":           {IssuerSpec{Issuer: "x", Audience: StringList{" "}, JWKSURL: "https://x/"}, false, "audience: empty"},
		"bad jwks url":        {IssuerSpec{Issuer: "x", JWKSURL: "ftp://x/"}, false, "jwks_url"},
		"prod http jwks":      {IssuerSpec{Issuer: "x", Audience: StringList{"a"}, JWKSURL: "http://idp.example/jwks"}, true, "must be https in prod"},
		"missing key file":    {IssuerSpec{Issuer: "x", PublicKeyFiles: map[string]string{"k": "nope.pem"}}, false, "public_key_files.k"},
		"empty key file name": {IssuerSpec{Issuer: "x", PublicKeyFiles: map[string]string{"k": " "}}, false, "empty file name"},
		"secret not a key":    {IssuerSpec{Issuer: "x", PublicKeyFiles: map[string]string{"k": "hs.secret"}}, false, "no PEM block"},
		"short hs256 secret":  {IssuerSpec{Issuer: "x", Audience: StringList{"a"}, HS256SecretFile: "short.secret"}, true, "at least 32 bytes"},
		"short secret in dev": {IssuerSpec{Issuer: "x", HS256SecretFile: "short.secret"}, false, "at least 32 bytes"},
		"missing secret file": {IssuerSpec{Issuer: "x", HS256SecretFile: "absent"}, false, "hs256_secret_file"},
	}
	for name, tc := range refusals {
		_, err := tc.spec.Load(IssuerLoadOptions{Prod: tc.prod, BaseDir: dir})
		require.ErrorContains(t, err, tc.msg, name)
	}

	_, err = LoadIssuers([]IssuerSpec{{Issuer: "x", JWKSURL: "https://x/"}, {Issuer: "x", JWKSURL: "https://y/"}}, IssuerLoadOptions{})
	require.ErrorContains(t, err, "configured twice")
}

// TestLoadIssuersFileEndToEnd loads an issuers file and authenticates
// tokens signed with its keys, and refuses what it must.
func TestLoadIssuersFileEndToEnd(t *testing.T) {
	t.Parallel()
	testKeys(t)
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir), "rsa.pem", "PUBLIC KEY", pkixDER(t, &rsaKey.PublicKey))
	writePEM(t, dir, "ed.pem", "PUBLIC KEY", pkixDER(t, edPub))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hs.secret"), hsSecret, 0o600))
	file := filepath.Join(dir, "issuers.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`issuers:
  - issuer: https://rsa.example
    audience: [agentos]
    public_key_files: {r1: rsa.pem}
  - issuer: https://ed.example
    audience: agentos
    public_key_files: {"": ed.pem}
  - issuer: https://hs.example
    audience: [agentos]
    hs256_secret_file: hs.secret
`), 0o644))
	issuers, err := LoadIssuersFile(file, true)
	require.NoError(t, err)
	require.Len(t, issuers, 3)
	st := newFakeStore()
	a, err := New(Config{Mode: ModeProd, Tenants: st, Tokens: st, Issuers: issuers, Now: func() time.Time { return testNow }})
	require.NoError(t, err)

	for name, tok := range map[string]string{
		"RS256": sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example")),
		"EdDSA": sign(t, jwt.SigningMethodEdDSA, edKey, "any-kid", claims("https://ed.example")),
		"HS256": sign(t, jwt.SigningMethodHS256, hsSecret, "", claims("https://hs.example")),
	} {
		ac, err := a.Authenticate(req(bearer(tok)...))
		require.NoError(t, err, name)
		require.Equal(t, "tnt_a", ac.TenantID, name)
		require.Equal(t, "usr_alice", ac.Principal.PrincipalID, name)
		require.Equal(t, MethodJWT, ac.Method)
	}
	for name, tc := range map[string]struct {
		tok string
		msg string
	}{
		"wrong audience": {sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://rsa.example", "aud", "elsewhere")), "audience"},
		"unknown kid":    {sign(t, jwt.SigningMethodRS256, rsaKey, "r2", claims("https://rsa.example")), "unknown kid"},
		"other key":      {sign(t, jwt.SigningMethodRS256, rsaOther, "r1", claims("https://rsa.example")), "signature"},
		"HS256 with the RSA issuer": {sign(t, jwt.SigningMethodHS256, hsSecret, "r1", claims("https://rsa.example")),
			"no shared secret"},
		"untrusted issuer": {sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims("https://evil.example")), "not trusted"},
	} {
		_, err := a.Authenticate(req(bearer(tc.tok)...))
		requireCode(t, err, errs.Unauthorized, tc.msg)
		_ = name
	}

	// A broken file names itself and the problem.
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("- issuer: https://x\n  audience: [a]\n  public_key_files: {k: missing.pem}\n"), 0o644))
	_, err = LoadIssuersFile(bad, true)
	require.ErrorContains(t, err, "bad.yaml")
	require.ErrorContains(t, err, "public_key_files.k")
	_, err = LoadIssuersFile(filepath.Join(dir, "absent.yaml"), true)
	require.Error(t, err)
}

// FuzzParseIssuersYAML: arbitrary input never panics; accepted input
// yields at least one issuer, and loading it never panics either.
func FuzzParseIssuersYAML(f *testing.F) {
	f.Add([]byte("- issuer: https://a\n  audience: x\n  jwks_url: https://a/j\n"))
	f.Add([]byte("issuers:\n  - issuer: b\n    public_key_files: {k: /dev/null}\n    hs256_secret_file: /nonexistent\n"))
	f.Add([]byte("issuers: [{issuer: c, audience: [a, b]}]"))
	f.Add([]byte("- &a {issuer: x}\n- *a\n"))
	f.Add([]byte(""))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		specs, err := ParseIssuersYAML(b)
		if err != nil {
			return
		}
		require.NotEmpty(t, specs)
		for _, s := range specs {
			// Only exercise validation that touches no files.
			s.PublicKeyFiles, s.HS256SecretFile = nil, ""
			if _, err := s.Load(IssuerLoadOptions{Prod: true}); err == nil {
				require.NotEmpty(t, strings.TrimSpace(s.Issuer))
				require.NotEmpty(t, s.Audience)
			}
		}
	})
}
