package auth

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxIssuerFileBytes bounds an issuers file, a key file and a secret file.
const maxIssuerFileBytes = 1 << 20

// MinHS256SecretLen is the shortest HS256 shared secret accepted.
const MinHS256SecretLen = 32

// IssuerSpec is one trusted JWT issuer as an operator configures it: in
// the issuers file (AGENTOS_JWT_ISSUERS_FILE) or through the AGENTOS_JWT_*
// variables. Key material is named by file; Load reads it.
type IssuerSpec struct {
	// Issuer is the exact "iss" value. Required.
	Issuer string `yaml:"issuer"`
	// Audience lists accepted "aud" values (a single string is accepted
	// too). Required in prod.
	Audience StringList `yaml:"audience"`
	// JWKSURL is fetched (and cached) for keys; https in prod (http only
	// to a loopback host).
	JWKSURL string `yaml:"jwks_url"`
	// PublicKeyFiles maps a "kid" to a PEM public key file (RSA, EC or
	// Ed25519; a certificate is accepted too). The kid "" verifies tokens
	// of any kid.
	PublicKeyFiles map[string]string `yaml:"public_key_files"`
	// HS256SecretFile holds a shared secret (at least MinHS256SecretLen
	// bytes after trimming surrounding whitespace) enabling HS256.
	HS256SecretFile string `yaml:"hs256_secret_file"`
}

// StringList is a YAML list of strings that also accepts a single string.
type StringList []string

// UnmarshalYAML accepts "a" or [a, b].
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = StringList{s}
		return nil
	case yaml.SequenceNode:
		var out []string
		if err := n.Decode(&out); err != nil {
			return err
		}
		*l = out
		return nil
	}
	return fmt.Errorf("line %d: want a string or a list of strings", n.Line)
}

// issuersDoc is the {issuers: [...]} form of an issuers file.
type issuersDoc struct {
	Issuers []IssuerSpec `yaml:"issuers"`
}

// ParseIssuersYAML parses an issuers file: either a list of issuers or a
// mapping with an "issuers" list. Each issuer is
//
//	issuer: https://idp.example.com/
//	audience: [agentos]
//	jwks_url: https://idp.example.com/.well-known/jwks.json
//	public_key_files: {key-2024: /etc/agentos/idp-2024.pem}
//	hs256_secret_file: /run/secrets/agentos-hs256
//
// Unknown fields are errors. Only the shape is checked here; Load checks
// the values and reads the files.
func ParseIssuersYAML(b []byte) ([]IssuerSpec, error) {
	if len(b) > maxIssuerFileBytes {
		return nil, fmt.Errorf("issuers file larger than %d bytes", maxIssuerFileBytes)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("issuers file: %w", err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, errors.New("issuers file lists no issuers")
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var specs []IssuerSpec
	switch root.Content[0].Kind {
	case yaml.SequenceNode:
		if err := dec.Decode(&specs); err != nil {
			return nil, fmt.Errorf("issuers file: %w", err)
		}
	case yaml.MappingNode:
		var doc issuersDoc
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("issuers file: %w", err)
		}
		specs = doc.Issuers
	default:
		return nil, errors.New("issuers file: want a list of issuers or a mapping with an \"issuers\" list")
	}
	if len(specs) == 0 {
		return nil, errors.New("issuers file lists no issuers")
	}
	return specs, nil
}

// IssuerLoadOptions say how IssuerSpecs become Issuers.
type IssuerLoadOptions struct {
	// Prod applies the production rules: an audience is required and a
	// JWKS URL must be https (http only to a loopback host).
	Prod bool
	// BaseDir resolves relative file names (the issuers file's directory).
	BaseDir string
}

// Load checks the spec and reads its key files into an Issuer. Errors
// name the issuer and the offending field.
func (s IssuerSpec) Load(o IssuerLoadOptions) (Issuer, error) {
	iss := strings.TrimSpace(s.Issuer)
	if iss == "" {
		return Issuer{}, errors.New("issuer: is required")
	}
	fail := func(field, format string, args ...any) error {
		return fmt.Errorf("issuer %q: %s: %s", iss, field, fmt.Sprintf(format, args...))
	}
	if iss == NodeIssuer {
		return Issuer{}, fail("issuer", "%q is reserved for the node's own service tokens", NodeIssuer)
	}
	out := Issuer{Issuer: iss}
	for _, a := range s.Audience {
		if a = strings.TrimSpace(a); a == "" {
			return Issuer{}, fail("audience", "empty value")
		}
		out.Audience = append(out.Audience, a)
	}
	if o.Prod && len(out.Audience) == 0 {
		return Issuer{}, fail("audience", "is required in prod (the tokens' \"aud\" must be checked)")
	}
	if s.JWKSURL == "" && len(s.PublicKeyFiles) == 0 && s.HS256SecretFile == "" {
		return Issuer{}, fail("keys", "set jwks_url, public_key_files or hs256_secret_file")
	}
	if s.JWKSURL != "" {
		u, err := url.Parse(s.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Issuer{}, fail("jwks_url", "%q is not an http(s) URL", s.JWKSURL)
		}
		if o.Prod && u.Scheme != "https" && !isLoopbackHost(u.Hostname()) {
			return Issuer{}, fail("jwks_url", "must be https in prod (http only to a loopback host)")
		}
		out.JWKSURL = s.JWKSURL
	}
	if len(s.PublicKeyFiles) > 0 {
		out.Keys = map[string]crypto.PublicKey{}
		kids := make([]string, 0, len(s.PublicKeyFiles))
		for kid := range s.PublicKeyFiles {
			kids = append(kids, kid)
		}
		sort.Strings(kids)
		for _, kid := range kids {
			path := s.PublicKeyFiles[kid]
			if strings.TrimSpace(path) == "" {
				return Issuer{}, fail("public_key_files."+kid, "empty file name")
			}
			b, err := readBounded(resolve(o.BaseDir, path))
			if err != nil {
				return Issuer{}, fail("public_key_files."+kid, "%v", err)
			}
			k, err := ParsePublicKeyPEM(b)
			if err != nil {
				return Issuer{}, fail("public_key_files."+kid, "%s: %v", path, err)
			}
			out.Keys[kid] = k
		}
	}
	if s.HS256SecretFile != "" {
		b, err := readBounded(resolve(o.BaseDir, s.HS256SecretFile))
		if err != nil {
			return Issuer{}, fail("hs256_secret_file", "%v", err)
		}
		secret := bytes.TrimSpace(b)
		if len(secret) < MinHS256SecretLen {
			return Issuer{}, fail("hs256_secret_file", "%s holds %d bytes; an HS256 secret must be at least %d bytes",
				s.HS256SecretFile, len(secret), MinHS256SecretLen)
		}
		out.HS256Secret = secret
	}
	return out, nil
}

// LoadIssuers loads every spec, refusing an issuer configured twice.
func LoadIssuers(specs []IssuerSpec, o IssuerLoadOptions) ([]Issuer, error) {
	seen := map[string]bool{}
	out := make([]Issuer, 0, len(specs))
	for i, s := range specs {
		iss, err := s.Load(o)
		if err != nil {
			return nil, fmt.Errorf("issuers[%d]: %w", i, err)
		}
		if seen[iss.Issuer] {
			return nil, fmt.Errorf("issuers[%d]: issuer %q is configured twice", i, iss.Issuer)
		}
		seen[iss.Issuer] = true
		out = append(out, iss)
	}
	return out, nil
}

// LoadIssuersFile reads and loads an issuers file (AGENTOS_JWT_ISSUERS_FILE);
// relative key file names are resolved against the file's directory.
func LoadIssuersFile(path string, prod bool) ([]Issuer, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	specs, err := ParseIssuersYAML(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	iss, err := LoadIssuers(specs, IssuerLoadOptions{Prod: prod, BaseDir: filepath.Dir(path)})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return iss, nil
}

// ParsePublicKeyPEM parses the first PEM block of b as a JWT verification
// key: "PUBLIC KEY" (PKIX: RSA, ECDSA P-256/384/521 or Ed25519), "RSA
// PUBLIC KEY" (PKCS#1) or "CERTIFICATE" (its public key). The key must be
// usable (RSA at least 2048 bits). Private keys are refused.
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block found (want \"PUBLIC KEY\", \"RSA PUBLIC KEY\" or \"CERTIFICATE\")")
	}
	var (
		k   any
		err error
	)
	switch blk.Type {
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "RSA PUBLIC KEY":
		k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
			k = c.PublicKey
		}
	default:
		if strings.Contains(blk.Type, "PRIVATE") {
			return nil, fmt.Errorf("PEM block is a %s: give the public key, never the private one", blk.Type)
		}
		return nil, fmt.Errorf("unsupported PEM block %q (want \"PUBLIC KEY\", \"RSA PUBLIC KEY\" or \"CERTIFICATE\")", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", blk.Type, err)
	}
	if _, err := algsForKey(k); err != nil {
		return nil, err
	}
	return k, nil
}

func resolve(base, path string) string {
	if base == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(base, path)
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIssuerFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxIssuerFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxIssuerFileBytes)
	}
	return b, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
