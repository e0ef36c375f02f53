package federation

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/outbound"
)

// DefaultCapabilityTTL is how long a peer's info and capabilities are cached.
const DefaultCapabilityTTL = time.Minute

// Connection bounds for calls to peers (outbound's defaults, which
// AGENTOS_OUTBOUND_* override). A peer that is down fails within
// PeerDialTimeout (connection refused fails at once), and one that accepts
// connections but does not answer the TLS handshake within
// PeerTLSHandshakeTimeout: either way the forward fails with 503
// dependency_unavailable in under 5 s. One that completes the handshake
// but never answers fails the same way after the response-header bound.
const (
	PeerDialTimeout         = outbound.DefaultDialTimeout
	PeerTLSHandshakeTimeout = outbound.DefaultTLSHandshakeTimeout
)

// Directory knows this node's peers: their keys, an mTLS client for each,
// and their info and capabilities, fetched and cached with expiry. When it
// was built from a peers file, it reloads the file when the file changes
// (so `agentos peers add` takes effect without a restart). It is safe for
// concurrent use.
type Directory struct {
	self     string
	tls      *pki.NodeTLS
	path     string
	ttl      time.Duration
	timeouts outbound.Timeouts
	now      func() time.Time

	mu      sync.Mutex
	modTime time.Time
	size    int64
	order   []string
	peers   map[string]*peerState
}

type peerState struct {
	peer      peers.Peer
	key       ed25519.PublicKey
	client    *http.Client
	info      PeerInfo
	caps      Capabilities
	fetchedAt time.Time
}

// DirectoryConfig configures a Directory.
type DirectoryConfig struct {
	// Self is this node's stack_id (never selected as a target).
	Self string
	// TLS is the node's certificate and federation CA. Required.
	TLS *pki.NodeTLS
	// PeersFile is the peers file to load and watch; empty means Peers only.
	PeersFile string
	// Peers is the static list used when PeersFile is empty.
	Peers []peers.Peer
	// CapabilityTTL is how long fetched capabilities are trusted; default
	// DefaultCapabilityTTL.
	CapabilityTTL time.Duration
	// Timeouts bound connecting, the TLS handshake and the wait for a
	// response's headers (outbound.FromConfig; zero fields take
	// outbound's defaults). Event streams from peers are not bound by them
	// past their headers.
	Timeouts outbound.Timeouts
}

// NewDirectory builds a Directory and loads its peers.
func NewDirectory(cfg DirectoryConfig) (*Directory, error) {
	if cfg.TLS == nil {
		return nil, errors.New("federation: DirectoryConfig.TLS is required")
	}
	d := &Directory{self: cfg.Self, tls: cfg.TLS, path: cfg.PeersFile, ttl: cfg.CapabilityTTL, now: time.Now,
		timeouts: cfg.Timeouts, peers: map[string]*peerState{}}
	if d.ttl <= 0 {
		d.ttl = DefaultCapabilityTTL
	}
	if d.path == "" {
		return d, d.set(cfg.Peers)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d, d.reloadLocked(true)
}

// set replaces the peer list, keeping cached capabilities of unchanged peers.
func (d *Directory) set(list []peers.Peer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.setLocked(list)
}

func (d *Directory) setLocked(list []peers.Peer) error {
	next := map[string]*peerState{}
	order := make([]string, 0, len(list))
	for _, p := range list {
		if err := p.Validate(); err != nil {
			return err
		}
		key, _ := p.Key()
		if old, ok := d.peers[p.StackID]; ok && reflect.DeepEqual(old.peer, p) {
			next[p.StackID] = old
			order = append(order, p.StackID)
			continue
		}
		client, err := d.clientFor(p)
		if err != nil {
			return fmt.Errorf("peer %s: %w", p.StackID, err)
		}
		next[p.StackID] = &peerState{peer: p, key: key, client: client}
		order = append(order, p.StackID)
	}
	d.peers, d.order = next, order
	return nil
}

// clientFor builds the mTLS client of one peer: our certificate, the
// peer's CA (or ours), its pinned fingerprint, and a check that the
// certificate it presents names the expected stack.
func (d *Directory) clientFor(p peers.Peer) (*http.Client, error) {
	var roots *x509.CertPool
	if p.CAFile != "" {
		pool, err := pki.ReadPool(p.CAFile)
		if err != nil {
			return nil, err
		}
		roots = pool
	}
	cfg := d.tls.ClientConfig(roots, p.PinnedCertSHA256)
	pinCheck := cfg.VerifyConnection
	want := p.StackID
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if pinCheck != nil {
			if err := pinCheck(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 || pki.StackIDOf(cs.PeerCertificates[0]) != want {
			return fmt.Errorf("peer certificate does not name stack %s", want)
		}
		return nil
	}
	return outbound.Client(d.timeouts, cfg), nil
}

// reloadLocked re-reads the peers file when it changed (or force).
func (d *Directory) reloadLocked(force bool) error {
	fi, err := os.Stat(d.path)
	if errors.Is(err, os.ErrNotExist) {
		d.modTime, d.size = time.Time{}, 0
		return d.setLocked(nil)
	}
	if err != nil {
		return err
	}
	if !force && fi.ModTime().Equal(d.modTime) && fi.Size() == d.size {
		return nil
	}
	list, err := peers.Load(d.path)
	if err != nil {
		return err
	}
	if err := d.setLocked(list); err != nil {
		return err
	}
	d.modTime, d.size = fi.ModTime(), fi.Size()
	return nil
}

// refresh reloads a changed peers file; a broken edit keeps the old list.
func (d *Directory) refresh() {
	if d.path == "" {
		return
	}
	_ = d.reloadLocked(false)
}

// Peers returns the current peer list in file order.
func (d *Directory) Peers() []peers.Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refresh()
	out := make([]peers.Peer, 0, len(d.order))
	for _, id := range d.order {
		out = append(out, d.peers[id].peer)
	}
	return out
}

// Key returns a known peer's identity-token key (identity.KeyLookup).
func (d *Directory) Key(stackID string) (ed25519.PublicKey, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refresh()
	st, ok := d.peers[stackID]
	if !ok {
		return nil, false
	}
	return st.key, true
}

// AllowsTenant reports whether a known peer may act for tenantID here
// (its tenants list in the peers file).
func (d *Directory) AllowsTenant(stackID, tenantID string) bool {
	st, ok := d.state(stackID)
	return ok && st.peer.AllowsTenant(tenantID)
}

func (d *Directory) state(stackID string) (*peerState, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refresh()
	st, ok := d.peers[stackID]
	return st, ok
}

// Describe returns a peer's info and capabilities, from the cache when
// fresh, else fetched over mTLS. A peer that cannot be reached is
// dependency_unavailable; an unknown stack_id is not_found.
func (d *Directory) Describe(ctx context.Context, stackID string) (PeerInfo, Capabilities, error) {
	st, ok := d.state(stackID)
	if !ok {
		return PeerInfo{}, Capabilities{}, errs.E(errs.NotFound, "%s is not a known peer", stackID)
	}
	d.mu.Lock()
	if !st.fetchedAt.IsZero() && d.now().Sub(st.fetchedAt) < d.ttl {
		info, caps := st.info, st.caps
		d.mu.Unlock()
		return info, caps, nil
	}
	d.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var infoBody struct {
		Peer PeerInfo `json:"peer"`
	}
	if err := d.getJSON(ctx, st, "/v1/federation/peer", &infoBody); err != nil {
		return PeerInfo{}, Capabilities{}, err
	}
	var capsBody struct {
		Capabilities Capabilities `json:"capabilities"`
	}
	if err := d.getJSON(ctx, st, "/v1/federation/peer/capabilities", &capsBody); err != nil {
		return PeerInfo{}, Capabilities{}, err
	}
	if infoBody.Peer.StackID != stackID {
		return PeerInfo{}, Capabilities{}, errs.E(errs.DependencyUnavailable,
			"peer at %s reports stack_id %q, want %q", st.peer.FederationURL, infoBody.Peer.StackID, stackID)
	}
	caps := capsBody.Capabilities
	norm := map[string]bool{}
	for k, v := range caps.Supports {
		norm[NormalizeCapability(k)] = v
	}
	caps.Supports = norm
	d.mu.Lock()
	st.info, st.caps, st.fetchedAt = infoBody.Peer, caps, d.now()
	d.mu.Unlock()
	return infoBody.Peer, caps, nil
}

func (d *Directory) getJSON(ctx context.Context, st *peerState, path string, dst any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(st.peer.FederationURL, "/")+path, nil)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "bad peer URL")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := st.client.Do(req)
	if err != nil {
		return unreachable(ctx, st.peer.StackID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return peerError(resp, st.peer.StackID)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(dst); err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "peer %s sent an unreadable %s response", st.peer.StackID, path)
	}
	return nil
}

// Do sends req to a peer's peer API over mTLS; path is relative to the
// peer's federation_url. A transport failure is dependency_unavailable.
func (d *Directory) Do(ctx context.Context, stackID, method, path string, body io.Reader, header http.Header) (*http.Response, error) {
	st, ok := d.state(stackID)
	if !ok {
		return nil, errs.E(errs.NotFound, "%s is not a known peer", stackID)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(st.peer.FederationURL, "/")+path, body)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "bad peer request")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := st.client.Do(req)
	if err != nil {
		return nil, unreachable(ctx, stackID, err)
	}
	return resp, nil
}

// unreachable maps a failed exchange with a peer (outbound.Error): the
// caller's leaving is canceled; anything else, a peer that did not answer
// in time included, dependency_unavailable. A deadline counts as the peer
// not answering too: the directory bounds its own calls (Describe, 10 s),
// and target selection skips a peer that is dependency_unavailable.
func unreachable(ctx context.Context, stackID string, err error) error {
	e := outbound.Error(ctx, "peer "+stackID, err)
	if e.Code == errs.Timeout {
		e = errs.Wrap(errs.DependencyUnavailable, e.Err, "peer %s did not answer in time", stackID)
	}
	return e.WithDetails(map[string]any{"peer_stack_id": stackID})
}

// Target is a selected peer.
type Target struct {
	Peer         peers.Peer
	Info         PeerInfo
	Capabilities Capabilities
}

// Select chooses the peer for a forward: it must match the selector's
// stack_id and region, speak APIVersion, and support every required
// capability (either spelling) plus extra ones the caller needs. Among the
// matches, a peer offering the preferred model tier wins; ties keep file
// order. No match is not_found with details.peers giving each peer's
// reason; when every otherwise eligible peer is unreachable the error is
// dependency_unavailable.
func (d *Directory) Select(ctx context.Context, sel TargetSelector, need ...string) (Target, error) {
	required := slices.Clone(need)
	for _, c := range sel.RequiredCapabilities {
		if n := NormalizeCapability(c); n != "" && !slices.Contains(required, n) {
			required = append(required, n)
		}
	}
	reasons := map[string]any{}
	var matches []Target
	down := 0
	considered := 0
	list := d.Peers()
	if sel.StackID != "" && !slices.ContainsFunc(list, func(p peers.Peer) bool { return p.StackID == sel.StackID }) {
		if sel.StackID == d.self {
			reasons[sel.StackID] = "is this node, not a peer"
		} else {
			reasons[sel.StackID] = "not a known peer"
		}
	}
	for _, p := range list {
		if sel.StackID != "" && p.StackID != sel.StackID {
			reasons[p.StackID] = fmt.Sprintf("stack_id is not %s", sel.StackID)
			continue
		}
		if sel.Region != "" && p.Region != sel.Region {
			reasons[p.StackID] = fmt.Sprintf("region %q is not %q", p.Region, sel.Region)
			continue
		}
		considered++
		info, caps, err := d.Describe(ctx, p.StackID)
		if err != nil {
			if errs.CodeOf(err) == errs.DependencyUnavailable {
				down++
			}
			reasons[p.StackID] = "unreachable: " + errs.As(err).Message
			continue
		}
		if !slices.Contains(info.APIVersions, APIVersion) {
			reasons[p.StackID] = fmt.Sprintf("no common API version (peer speaks %v, this node %s)", info.APIVersions, APIVersion)
			continue
		}
		var missing []string
		for _, c := range required {
			if !caps.Has(c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			reasons[p.StackID] = "lacks capabilities: " + strings.Join(missing, ", ")
			continue
		}
		matches = append(matches, Target{Peer: p, Info: info, Capabilities: caps})
	}
	if len(matches) == 0 {
		details := map[string]any{"peers": reasons}
		if considered > 0 && down == considered {
			return Target{}, errs.E(errs.DependencyUnavailable, "no peer matching the target selector is reachable").WithDetails(details)
		}
		return Target{}, errs.E(errs.NotFound, "no peer matches the target selector").WithDetails(details)
	}
	if tier := sel.PreferredModelTier; tier != "" {
		slices.SortStableFunc(matches, func(a, b Target) int {
			ha, hb := slices.Contains(a.Capabilities.Models.Tiers, tier), slices.Contains(b.Capabilities.Models.Tiers, tier)
			switch {
			case ha && !hb:
				return -1
			case hb && !ha:
				return 1
			}
			return 0
		})
	}
	return matches[0], nil
}

// peerError turns a peer's error answer into the error this node's client
// gets. The client's own credential was checked here and was fine, so a
// peer refusing this node's credentials (401: certificate, identity token)
// is this node's dependency failing: 503 dependency_unavailable. Other
// codes keep their meaning: 403 forbidden is a policy refusal on the peer
// (tenant unknown or disabled there, not entitled), 404, 409, 429 and so
// on. Details keep the peer's details and add peer_stack_id (and
// remote_stack_id, its older name) and peer_error_code.
func peerError(resp *http.Response, stackID string) error {
	e := errs.As(remoteError(resp, "peer "+stackID))
	details := make(map[string]any, len(e.Details)+3)
	for k, v := range e.Details {
		details[k] = v
	}
	details["peer_stack_id"] = stackID
	details["remote_stack_id"] = stackID
	details["peer_error_code"] = string(e.Code)
	if e.Code == errs.Unauthorized {
		return &errs.Error{Code: errs.DependencyUnavailable, Details: details,
			Message: fmt.Sprintf("peer %s refused this node's federation credentials (%s); check the peers' certificates and keys", stackID, e.Message)}
	}
	return &errs.Error{Code: e.Code, Message: e.Message, Details: details, RetryAfter: e.RetryAfter}
}

// remoteError rebuilds the contract error a peer (or the local
// orchestrator) answered with, keeping its code, message and details
// (httpx.DecodeErrorFrom).
func remoteError(resp *http.Response, who string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return httpx.DecodeErrorFrom(who, resp.StatusCode, resp.Header, b)
}
