// Package natsd runs an embedded NATS server with JetStream (the
// nats-server package): `agentos serve nats`, the bus of the cluster
// profile. Its settings are the bus adapter's (see internal/bus/nats and
// its natstest helper): file store, sync_interval always for a single
// server (the only copy), the default interval in a three-server cluster
// whose streams keep three replicas.
package natsd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterName is the NATS cluster's name in the cluster profile.
const ClusterName = "agentos"

// Options is one server's settings.
type Options struct {
	Name        string   // server name, unique in a cluster (nats, nats-2, ...)
	Addr        string   // client listen address, host:port
	MonitorAddr string   // HTTP monitor (/healthz) listen address, host:port
	ClusterAddr string   // route listen address; "" for a single server
	Routes      []string // nats://host:port of every server's route listener (its own may be among them)
	StoreDir    string   // JetStream file store
	// MaxStore bounds the file store (bytes); 0: 1 GiB.
	MaxStore int64
	// Auth, when set, lets in only the control key and registered
	// workers (see Auth); nil: no authentication (the bus is reachable
	// only by what can reach its address).
	Auth *Auth
}

func hostPort(field, addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: want host:port", field, addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s %q: port must be 1 to 65535", field, addr)
	}
	return h, port, nil
}

// ServerOptions turns o into nats-server options, checking every field.
func (o Options) ServerOptions() (*server.Options, error) {
	if o.Name == "" {
		return nil, errors.New("--name: required")
	}
	if o.StoreDir == "" {
		return nil, errors.New("--store-dir: required")
	}
	host, port, err := hostPort("--addr", o.Addr)
	if err != nil {
		return nil, err
	}
	mhost, mport, err := hostPort("--monitor-addr", o.MonitorAddr)
	if err != nil {
		return nil, err
	}
	if o.MaxStore == 0 {
		o.MaxStore = 1 << 30
	}
	so := &server.Options{
		ServerName: o.Name,
		Host:       host,
		Port:       port,
		HTTPHost:   mhost,
		HTTPPort:   mport,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		// Small reservations, as natstest's: the machine is shared with
		// the replicas and PostgreSQL.
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  o.MaxStore,
		// One server is the only copy: fsync every message (the bus/nats
		// package doc weighs the cost). A cluster keeps the interval.
		SyncAlways: o.ClusterAddr == "",
		NoSigs:     true, // the caller's context stops it
	}
	if o.ClusterAddr == "" {
		if len(o.Routes) > 0 {
			return nil, errors.New("--routes: needs --cluster-addr")
		}
		return so, nil
	}
	chost, cport, err := hostPort("--cluster-addr", o.ClusterAddr)
	if err != nil {
		return nil, err
	}
	so.Cluster = server.ClusterOpts{Name: ClusterName, Host: chost, Port: cport}
	for _, r := range o.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats" || u.Host == "" {
			return nil, fmt.Errorf("--routes %q: want nats://host:port", r)
		}
		so.Routes = append(so.Routes, u)
	}
	return so, nil
}

// Run starts the server and serves until ctx is done, then shuts it down
// (clients are disconnected, the store is flushed and closed).
func Run(ctx context.Context, o Options, logf func(format string, args ...any)) error {
	so, err := o.ServerOptions()
	if err != nil {
		return err
	}
	var users string
	var authn *authenticator
	if o.Auth != nil {
		o.Auth.withDefaults()
		if err := o.Auth.validate(); err != nil {
			return err
		}
		initial, err := initialUsers(ctx, o.Auth, logf)
		if err != nil {
			return err
		}
		users, authn = fingerprint(initial), newAuthenticator(initial)
		so.CustomClientAuthentication, so.AlwaysEnableNonce = authn, true
	}
	s, err := server.NewServer(so)
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	s.ConfigureLogger()
	if authn != nil {
		authn.srv.Store(s)
	}
	go s.Start()
	if !s.ReadyForConnections(60 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats server %s: not accepting connections on %s after 60s", o.Name, o.Addr)
	}
	logf("nats server %s: clients on %s, monitor on http://%s/healthz, store %s, cluster %q routes %s, auth %t",
		o.Name, o.Addr, o.MonitorAddr, o.StoreDir, o.ClusterAddr, strings.Join(o.Routes, ","), o.Auth != nil)
	if o.Auth != nil {
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go watchRegistry(wctx, authn, o, users, logf)
	}
	select {
	case <-ctx.Done():
	case <-waitShutdown(s):
		return fmt.Errorf("nats server %s stopped", o.Name)
	}
	s.Shutdown()
	s.WaitForShutdown()
	logf("nats server %s: stopped", o.Name)
	return nil
}

func waitShutdown(s *server.Server) <-chan struct{} {
	c := make(chan struct{})
	go func() { s.WaitForShutdown(); close(c) }()
	return c
}
