package node

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/metrics"
	"github.com/nexixai/agentos/internal/outbound"
)

// FederationFiles returns where the federation service reads its identity:
// the FilesIn layout under cfg.Home, with each file overridden by its
// config field when set (AGENTOS_FEDERATION_CA_FILE, _CERT_FILE,
// _KEY_FILE, _SIGNING_KEY_FILE and _PEERS_FILE).
func FederationFiles(cfg config.Config) federation.Files {
	f := federation.FilesIn(cfg.Home)
	f.CA = cmp.Or(cfg.FederationCAFile, f.CA)
	f.Cert = cmp.Or(cfg.FederationCertFile, f.Cert)
	f.Key = cmp.Or(cfg.FederationKeyFile, f.Key)
	f.SigningKey = cmp.Or(cfg.FederationSigningKeyFile, f.SigningKey)
	f.Peers = cmp.Or(cfg.FederationPeersFile, f.Peers)
	return f
}

// fedIdentity loads the node certificate and identity key. In demo/dev,
// with the default layout, whatever is missing is generated (a CA under
// federation/ca, a certificate for cfg.StackID, a signing key); prod only
// reads files.
func fedIdentity(cfg config.Config, f federation.Files) (*pki.NodeTLS, *identity.Signer, error) {
	if cfg.DevMode() && f == federation.FilesIn(cfg.Home) {
		if _, err := federation.EnsureIdentity(f, cfg.StackID, f.CADir, nil); err != nil {
			return nil, nil, fmt.Errorf("federation identity: %w", err)
		}
	}
	nt, err := pki.LoadNodeTLS(f.CA, f.Cert, f.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (create them with `agentos certs init` and `agentos certs issue --stack-id %s`)", err, cfg.StackID)
	}
	if nt.StackID != cfg.StackID {
		return nil, nil, fmt.Errorf("node certificate %s names stack %q but this node is %q (AGENTOS_STACK_ID)", f.Cert, nt.StackID, cfg.StackID)
	}
	key, err := identity.LoadOrCreateKey(f.SigningKey, cfg.DevMode())
	if err != nil {
		return nil, nil, fmt.Errorf("%w (prod mode generates no keys: provision %s)", err, f.SigningKey)
	}
	return nt, identity.NewSigner(cfg.StackID, key), nil
}

// RunFederation serves the federation service until ctx ends: the client
// API on cfg.FederationAddr (plain HTTP in demo/dev, TLS in prod: see
// federationClientTLS) and the mTLS peer API on cfg.FederationPeerAddr.
func RunFederation(ctx context.Context, cfg config.Config) error {
	log := newLogger(cfg, federation.ServiceName)
	stopTracing, err := startTracing(ctx, cfg, federation.ServiceName, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	// Two descriptors a proxied stream: the client's connection and the
	// upstream one (peer or local orchestrator).
	maxStreams := streamCap(cfg, 2, log)
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	nodeKey, err := nodeSigner(cfg)
	if err != nil {
		return err
	}
	files := FederationFiles(cfg)
	nt, signer, err := fedIdentity(cfg, files)
	if err != nil {
		return err
	}
	dir, err := federation.NewDirectory(federation.DirectoryConfig{Self: cfg.StackID, TLS: nt, PeersFile: files.Peers,
		Timeouts: outbound.FromConfig(cfg)})
	if err != nil {
		return fmt.Errorf("peers file %s: %w", files.Peers, err)
	}
	sink, err := audit.OpenSink(cfg.AuditSink)
	if err != nil {
		return fmt.Errorf("audit sink %q: %w", cfg.AuditSink, err)
	}
	defer sink.Close()

	registry := metrics.NewRegistry()
	authn, err := newAuthenticator(cfg, st, nodeKey, federation.ServiceName, metrics.NewAuthFailures(registry, federation.ServiceName))
	if err != nil {
		return err
	}
	srv, err := federation.New(federation.Config{
		StackID: cfg.StackID, Region: cfg.Region, Environment: cfg.Environment,
		OrchestratorURL: cfg.OrchestratorURL, ModelPolicyURL: cfg.ModelPolicyURL,
		Signer: signer, Directory: dir, Store: st, Audit: audit.New(st, sink),
		Orchestrator: &federation.Orchestrator{BaseURL: cfg.OrchestratorURL, Minter: nodeKey,
			HTTP: outbound.Client(outbound.FromConfig(cfg), nil)},
		Authenticate: authn.Middleware, Logger: log, Registry: registry,
		MaxConcurrentRuns: cfg.QuotaConcurrentRuns, ToolHosting: true,
		MaxEventStreams: maxStreams, TenantStreams: cfg.QuotaMaxStreams,
	})
	if err != nil {
		return err
	}
	log.Info("federation identity", "stack_id", cfg.StackID, "region", cfg.Region,
		"certificate", files.Cert, "peers_file", files.Peers, "peers", len(dir.Peers()),
		"public_key", identity.EncodePublicKey(signer.PublicKey()))

	peerLn, err := net.Listen("tcp", cfg.FederationPeerAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (peer API): %w (is another process using the port? try `lsof -i :%s`)",
			cfg.FederationPeerAddr, err, portOf(cfg.FederationPeerAddr))
	}
	clientLn, err := net.Listen("tcp", cfg.FederationAddr)
	if err != nil {
		peerLn.Close()
		return fmt.Errorf("listen on %s: %w (is another process using the port? try `lsof -i :%s`)",
			cfg.FederationAddr, err, portOf(cfg.FederationAddr))
	}
	clientTLS, err := federationClientTLS(cfg, nt)
	if err != nil {
		peerLn.Close()
		clientLn.Close()
		return err
	}
	if clientTLS != nil {
		clientLn = tls.NewListener(clientLn, clientTLS)
		log.Info("client API served over TLS", "addr", cfg.FederationAddr)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() {
		errc <- ServeListener(ctx, cfg, tls.NewListener(peerLn, nt.ServerConfig()), srv.PeerHandler(), log.With("api", "peer"))
	}()
	go func() {
		errc <- ServeListener(ctx, cfg, clientLn, srv.ClientHandler(), log.With("api", "client"))
	}()
	first := <-errc
	cancel()
	second := <-errc
	if first != nil {
		return first
	}
	return second
}

// federationClientTLS is the TLS configuration of the client API: nil (plain
// HTTP, meant for loopback) in demo/dev; in prod, TLS 1.2+ with
// AGENTOS_FEDERATION_CLIENT_CERT_FILE and _KEY_FILE when set, else the
// node's federation certificate (the peer API's). Client certificates are
// not requested: callers authenticate with their credentials as on every
// other API.
func federationClientTLS(cfg config.Config, nt *pki.NodeTLS) (*tls.Config, error) {
	if cfg.DevMode() {
		return nil, nil
	}
	cert := nt.Cert
	switch certFile, keyFile := cfg.FederationClientCertFile, cfg.FederationClientKeyFile; {
	case certFile != "" && keyFile != "":
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("federation client API certificate (AGENTOS_FEDERATION_CLIENT_CERT_FILE, AGENTOS_FEDERATION_CLIENT_KEY_FILE): %w", err)
		}
		cert = pair
	case certFile != "" || keyFile != "":
		return nil, fmt.Errorf("set both AGENTOS_FEDERATION_CLIENT_CERT_FILE and AGENTOS_FEDERATION_CLIENT_KEY_FILE, or neither (then the node certificate is used)")
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientAuth: tls.NoClientCert}, nil
}
