// Package peers reads and edits the federation peers file: the static list
// of nodes this node may forward to and accept calls from
// ($AGENTOS_HOME/federation/peers.yaml by default).
//
//	peers:
//	  - stack_id: stk_local_node_b
//	    federation_url: https://127.0.0.1:50094   # the peer's mTLS peer API
//	    region: local
//	    public_key: ed25519:<base64>               # the peer's identity-token key
//	    ca_file: /path/to/ca.pem                   # optional: the peer's CA (default: ours)
//	    pinned_cert_sha256: <hex>                  # optional: pin the peer's certificate
//
// Edits (Add, Remove) rewrite the whole file atomically.
package peers

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/nexixai/agentos/federation/identity"
)

// Peer is one entry of the peers file.
type Peer struct {
	// StackID is the peer's stack_id (its identity-token issuer and the
	// name in its certificate).
	StackID string `yaml:"stack_id" json:"stack_id"`
	// FederationURL is the base URL of the peer's mTLS peer API (https).
	FederationURL string `yaml:"federation_url" json:"federation_url"`
	// Region is the peer's region, used by target selection.
	Region string `yaml:"region,omitempty" json:"region,omitempty"`
	// PublicKey verifies the peer's identity tokens ("ed25519:<base64>").
	PublicKey string `yaml:"public_key" json:"public_key"`
	// CAFile, if set, is the CA that signed the peer's certificate
	// (default: this node's federation CA).
	CAFile string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	// PinnedCertSHA256, if set, is the hex SHA-256 of the peer's certificate.
	PinnedCertSHA256 string `yaml:"pinned_cert_sha256,omitempty" json:"pinned_cert_sha256,omitempty"`
	// Tenants, if set, are the only tenants the peer may act for on this
	// node (forward runs, read their events, replicate events); empty or
	// "*" is every tenant. A peer's identity token names the tenant, so
	// without this list a compromised peer can act for any active tenant.
	Tenants []string `yaml:"tenants,omitempty" json:"tenants,omitempty"`
}

// AllowsTenant reports whether the peer may act for tenantID.
func (p Peer) AllowsTenant(tenantID string) bool {
	return len(p.Tenants) == 0 || slices.Contains(p.Tenants, "*") || slices.Contains(p.Tenants, tenantID)
}

// Key returns the parsed public key (Validate has checked it).
func (p Peer) Key() (ed25519.PublicKey, error) { return identity.ParsePublicKey(p.PublicKey) }

var (
	stackIDRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)
	hexRE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Validate checks one entry; the error names the field.
func (p Peer) Validate() error {
	if !stackIDRE.MatchString(p.StackID) {
		return fmt.Errorf("stack_id %q: want 1-64 letters, digits, '_', '.', '-'", p.StackID)
	}
	u, err := url.Parse(p.FederationURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("peer %s: federation_url %q: want an https:// URL", p.StackID, p.FederationURL)
	}
	if _, err := p.Key(); err != nil {
		return fmt.Errorf("peer %s: public_key: %v", p.StackID, err)
	}
	if p.PinnedCertSHA256 != "" && !hexRE.MatchString(NormalizeFingerprint(p.PinnedCertSHA256)) {
		return fmt.Errorf("peer %s: pinned_cert_sha256: want 64 hex digits", p.StackID)
	}
	for i, t := range p.Tenants {
		if t != "*" && !stackIDRE.MatchString(t) {
			return fmt.Errorf("peer %s: tenants[%d] %q: want a tenant id or \"*\"", p.StackID, i, t)
		}
	}
	return nil
}

// NormalizeFingerprint lowercases a fingerprint and drops ':' separators.
func NormalizeFingerprint(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
}

// file is the YAML document.
type file struct {
	Peers []Peer `yaml:"peers"`
}

// Parse decodes and validates a peers file. Duplicate stack_ids are an error.
func Parse(b []byte) ([]Peer, error) {
	var f file
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("peers file: %w", err)
	}
	seen := map[string]bool{}
	for i, p := range f.Peers {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("peers file: peers[%d]: %w", i, err)
		}
		if seen[p.StackID] {
			return nil, fmt.Errorf("peers file: peers[%d]: stack_id %q listed twice", i, p.StackID)
		}
		seen[p.StackID] = true
	}
	if f.Peers == nil {
		f.Peers = []Peer{}
	}
	return f.Peers, nil
}

// Load reads the peers file at path. A missing file means no peers.
func Load(path string) ([]Peer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return []Peer{}, nil
	}
	if err != nil {
		return nil, err
	}
	ps, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ps, nil
}

// Save writes ps to path atomically (0600).
func Save(path string, ps []Peer) error {
	for i, p := range ps {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("peers[%d]: %w", i, err)
		}
	}
	b, err := yaml.Marshal(file{Peers: ps})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".peers-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Add validates p and adds it to the peers file at path, replacing an entry
// with the same stack_id. replaced reports whether one existed.
func Add(path string, p Peer) (replaced bool, err error) {
	p.PinnedCertSHA256 = NormalizeFingerprint(p.PinnedCertSHA256)
	if err := p.Validate(); err != nil {
		return false, err
	}
	ps, err := Load(path)
	if err != nil {
		return false, err
	}
	for i := range ps {
		if ps[i].StackID == p.StackID {
			ps[i] = p
			return true, Save(path, ps)
		}
	}
	return false, Save(path, append(ps, p))
}

// ErrUnknownPeer is returned by Remove for a stack_id not in the file.
var ErrUnknownPeer = errors.New("no such peer")

// Remove deletes the entry for stackID; ErrUnknownPeer if there is none.
func Remove(path, stackID string) error {
	ps, err := Load(path)
	if err != nil {
		return err
	}
	for i := range ps {
		if ps[i].StackID == stackID {
			return Save(path, append(ps[:i], ps[i+1:]...))
		}
	}
	return fmt.Errorf("%w: %s", ErrUnknownPeer, stackID)
}
