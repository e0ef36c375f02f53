// Package pki makes and loads the federation's certificates: a federation CA
// (`agentos certs init`) and per-node certificates that serve as both the
// node's server certificate (peer API) and its client certificate (calls to
// peers) (`agentos certs issue --stack-id ...`). Production reads the same
// files; it never generates them.
//
// A node certificate names its stack in the subject CommonName and in a URI
// SAN agentos://stack/<stack_id>; StackIDOf reads it back so that a peer's
// TLS identity can be bound to the identity token it sends.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// File names inside a CA directory and a node's federation directory.
const (
	CAFile      = "ca.pem"
	CAKeyFile   = "ca-key.pem"
	NodeFile    = "node.pem"
	NodeKeyFile = "node-key.pem"
)

// Validity periods.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	NodeValidity = 825 * 24 * time.Hour
)

// URIScheme is the scheme of the URI SAN naming a node's stack.
const URIScheme = "agentos"

// StackIDPattern is what a stack_id must look like.
var StackIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)

// DefaultHosts are the SANs of a node certificate issued without hosts.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// InitCA creates a federation CA in dir (ca.pem, ca-key.pem) unless one is
// already there, and returns the CA certificate. created reports whether a
// new CA was made.
func InitCA(dir string) (ca *x509.Certificate, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	if _, err := os.Stat(certPath); err == nil {
		ca, _, err := LoadCA(dir)
		return ca, false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "AgentOS federation CA", Organization: []string{"AgentOS"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(certPath, pemCert(der), 0o644); err != nil {
		return nil, false, err
	}
	ca, err = x509.ParseCertificate(der)
	return ca, true, err
}

// LoadCA reads the CA certificate and key from dir.
func LoadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := ReadCert(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, nil, err
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("pki: %s is not a CA certificate", filepath.Join(dir, CAFile))
	}
	b, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return cert, nil, fmt.Errorf("pki: read CA key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return cert, nil, errors.New("pki: CA key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return cert, nil, fmt.Errorf("pki: CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return cert, nil, errors.New("pki: CA key is not ECDSA")
	}
	return cert, key, nil
}

// IssueNodeCert issues a certificate for stackID signed by the CA in caDir,
// valid for hosts (DNS names or IPs; DefaultHosts when empty) and for both
// server and client authentication. It writes outDir/node.pem,
// outDir/node-key.pem and a copy of the CA certificate as outDir/ca.pem,
// replacing earlier files, and returns the certificate.
func IssueNodeCert(caDir, stackID string, hosts []string, outDir string) (*x509.Certificate, error) {
	if !StackIDPattern.MatchString(stackID) {
		return nil, fmt.Errorf("pki: stack_id %q: want 1-64 letters, digits, '_', '.', '-'", stackID)
	}
	caCert, caKey, err := LoadCA(caDir)
	if err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: stackID, Organization: []string{"AgentOS federation"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(NodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{{Scheme: URIScheme, Host: "stack", Path: "/" + stackID}},
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(outDir, NodeKeyFile), key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(outDir, NodeFile), pemCert(der), 0o644); err != nil {
		return nil, err
	}
	if filepath.Clean(caDir) != filepath.Clean(outDir) {
		if err := os.WriteFile(filepath.Join(outDir, CAFile), pemCert(caCert.Raw), 0o644); err != nil {
			return nil, err
		}
	}
	return x509.ParseCertificate(der)
}

// StackIDOf returns the stack a node certificate names: its
// agentos://stack/<id> URI SAN, else its CommonName.
func StackIDOf(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == URIScheme && u.Host == "stack" {
			return strings.TrimPrefix(u.Path, "/")
		}
	}
	return c.Subject.CommonName
}

// Fingerprint returns the lowercase hex SHA-256 of a certificate's DER
// bytes (the form of a pinned certificate in the peers file).
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// ReadCert reads the first certificate of a PEM file.
func ReadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pki: %s: no PEM CERTIFICATE block", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// ReadPool reads every certificate of the PEM files into a pool.
func ReadPool(paths ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("pki: %s: no certificate", p)
		}
	}
	return pool, nil
}

// NodeTLS is what a node needs for mutual TLS with its peers.
type NodeTLS struct {
	Cert    tls.Certificate // the node's certificate and key
	Leaf    *x509.Certificate
	CAs     *x509.CertPool // the federation CA(s)
	StackID string         // read from the certificate
}

// LoadNodeTLS reads caFile, certFile and keyFile.
func LoadNodeTLS(caFile, certFile, keyFile string) (*NodeTLS, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	pair.Leaf = leaf
	pool, err := ReadPool(caFile)
	if err != nil {
		return nil, err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("pki: node certificate is not signed by the federation CA: %w", err)
	}
	return &NodeTLS{Cert: pair, Leaf: leaf, CAs: pool, StackID: StackIDOf(leaf)}, nil
}

// ServerConfig returns the TLS configuration of the peer listener: TLS 1.2+
// with the node certificate; a client certificate, when presented, must
// chain to the federation CA (the handshake fails otherwise). The HTTP
// layer (the federation peer API) then refuses requests that came without
// one, so that the caller gets the contract's unauthorized
// envelope instead of a bare handshake failure.
func (n *NodeTLS) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{n.Cert},
		ClientCAs:    n.CAs,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
}

// ClientConfig returns the TLS configuration for calling a peer: the node
// certificate as client certificate, and peers verified against the
// federation CA (or extraRoots when non-nil, e.g. a peer's own CA file).
// When pinSHA256 is set the peer's leaf certificate must have that
// fingerprint as well.
func (n *NodeTLS) ClientConfig(extraRoots *x509.CertPool, pinSHA256 string) *tls.Config {
	roots := n.CAs
	if extraRoots != nil {
		roots = extraRoots
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{n.Cert},
		RootCAs:      roots,
	}
	if pin := strings.ToLower(strings.ReplaceAll(pinSHA256, ":", "")); pin != "" {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || Fingerprint(cs.PeerCertificates[0]) != pin {
				return errors.New("pki: peer certificate does not match the pinned fingerprint")
			}
			return nil
		}
	}
	return cfg
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
