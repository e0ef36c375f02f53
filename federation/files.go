package federation

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/federation/pki"
)

// Files is where a node keeps its federation identity. The default layout
// (FilesIn) is under $AGENTOS_HOME/federation:
//
//	ca/ca.pem, ca/ca-key.pem   the federation CA (only on the node that made it)
//	ca.pem                     the CA certificate peers are checked against
//	node.pem, node-key.pem     this node's server+client certificate
//	signing.key                this node's Ed25519 identity-token key (0600)
//	signing.pub                its public key, "ed25519:<base64>", for peers
//	peers.yaml                 the peers file
type Files struct {
	Dir        string
	CADir      string
	CA         string
	Cert       string
	Key        string
	SigningKey string
	SigningPub string
	Peers      string
}

// FilesIn returns the default layout under home: FilesAt(home/federation).
func FilesIn(home string) Files { return FilesAt(filepath.Join(home, "federation")) }

// FilesAt returns the layout inside one federation directory.
func FilesAt(dir string) Files {
	return Files{
		Dir:        dir,
		CADir:      filepath.Join(dir, "ca"),
		CA:         filepath.Join(dir, pki.CAFile),
		Cert:       filepath.Join(dir, pki.NodeFile),
		Key:        filepath.Join(dir, pki.NodeKeyFile),
		SigningKey: filepath.Join(dir, "signing.key"),
		SigningPub: filepath.Join(dir, "signing.pub"),
		Peers:      filepath.Join(dir, "peers.yaml"),
	}
}

// EnsureIdentity makes whatever is missing of a node's federation identity
// (demo/dev and the local recipes; production provisions the files):
// unless f already holds a valid certificate naming stackID that chains to
// f.CA, a CA in caDir (kept if there is one) and a node certificate for
// stackID signed by it; then the identity signing key (kept if present)
// and its signing.pub. It
// returns the public key text to give to peers. f must be a FilesAt layout.
func EnsureIdentity(f Files, stackID, caDir string, hosts []string) (string, error) {
	if d := FilesAt(f.Dir); f.CA != d.CA || f.Cert != d.Cert || f.Key != d.Key {
		return "", errors.New("federation: EnsureIdentity writes the default layout; use FilesIn or FilesAt")
	}
	// A valid certificate naming stackID that chains to f.CA is kept, even
	// when another node's CA issued it (the two-node recipe).
	if n, err := pki.LoadNodeTLS(f.CA, f.Cert, f.Key); err != nil || n.StackID != stackID {
		if _, _, err := pki.InitCA(caDir); err != nil {
			return "", fmt.Errorf("federation CA: %w", err)
		}
		if _, err := pki.IssueNodeCert(caDir, stackID, hosts, f.Dir); err != nil {
			return "", fmt.Errorf("node certificate: %w", err)
		}
	}
	key, err := identity.LoadOrCreateKey(f.SigningKey, true)
	if err != nil {
		return "", err
	}
	pub := identity.EncodePublicKey(key.Public().(ed25519.PublicKey))
	if err := os.WriteFile(f.SigningPub, []byte(pub+"\n"), 0o644); err != nil {
		return "", err
	}
	return pub, nil
}

// PeerEntry builds the peers-file entry that describes the node whose
// files are f, reachable at peerURL (its https peer API).
func PeerEntry(f Files, stackID, peerURL, region string) (peers.Peer, error) {
	key, err := identity.LoadOrCreateKey(f.SigningKey, false)
	if err != nil {
		return peers.Peer{}, err
	}
	p := peers.Peer{StackID: stackID, FederationURL: peerURL, Region: region,
		PublicKey: identity.EncodePublicKey(key.Public().(ed25519.PublicKey))}
	return p, p.Validate()
}
