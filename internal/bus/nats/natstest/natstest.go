// Package natstest runs NATS servers with JetStream inside the test
// process (the nats-server package, embedded): one server, or a cluster of
// three on loopback, each with its file store in a temporary directory.
// The bus tests use it, and so can e2e tests that need a bus.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options shapes the servers.
type Options struct {
	// Servers is 1 (default) or 3 (a JetStream cluster).
	Servers int
	// SyncAlways fsyncs every stored message (sync_interval: always)
	// instead of every 2 minutes: no loss window on power failure, at a
	// cost per message. See the bus/nats package doc.
	SyncAlways bool
	// Dir holds the servers' stores (default: a t.TempDir()).
	Dir string
}

// Cluster is the running servers. Kill and Restart one to test failover.
type Cluster struct {
	t       testing.TB
	opts    []*server.Options
	servers []*server.Server
}

// Start starts the servers and waits until JetStream is ready (in a
// cluster: a meta leader elected). They are shut down at the end of the
// test.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Servers == 0 {
		o.Servers = 1
	}
	if o.Servers != 1 && o.Servers != 3 {
		t.Fatalf("natstest: Servers must be 1 or 3, not %d", o.Servers)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	c := &Cluster{t: t}
	var routes []*url.URL
	var clusterPorts []int
	if o.Servers > 1 {
		for range o.Servers {
			p := freePort(t)
			clusterPorts = append(clusterPorts, p)
			routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
		}
	}
	for i := range o.Servers {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       freePort(t), // fixed, so that a restarted server comes back where it was
			JetStream:  true,
			StoreDir:   filepath.Join(o.Dir, fmt.Sprintf("n%d", i+1)),
			// Small reservations: the machine is shared.
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  1 << 30,
			SyncAlways:         o.SyncAlways,
			NoLog:              true,
			NoSigs:             true,
		}
		if o.Servers > 1 {
			opts.Cluster = server.ClusterOpts{Name: "agentos", Host: "127.0.0.1", Port: clusterPorts[i]}
			opts.Routes = routes
		}
		c.opts = append(c.opts, opts)
		c.servers = append(c.servers, nil)
	}
	t.Cleanup(c.Shutdown)
	for i := range c.servers {
		c.Restart(i)
	}
	c.WaitReady()
	return c
}

// freePort asks the kernel for a free loopback port. (Racy in theory:
// another process could take it before the server binds; nothing on this
// machine hands out ports that fast.)
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL lists every server's client URL, for nats.Connect: a client fails
// over among them.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://%s:%d", o.Host, o.Port)
	}
	return strings.Join(urls, ",")
}

// Server returns server i (nil while killed).
func (c *Cluster) Server(i int) *server.Server { return c.servers[i] }

// Kill stops server i at once: its clients are cut off and the cluster
// goes on without it. (An embedded server cannot be kill -9ed; its store
// files are left as they are, and Restart starts from them.)
func (c *Cluster) Kill(i int) {
	if s := c.servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.servers[i] = nil
	}
}

// Restart starts server i again from its store.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.servers[i] != nil {
		return
	}
	s, err := server.NewServer(c.opts[i])
	if err != nil {
		c.t.Fatalf("natstest: server %d: %v", i, err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		c.t.Fatalf("natstest: server %d did not start", i)
	}
	c.servers[i] = s
}

// WaitReady waits for JetStream on every running server: in a cluster
// until a meta leader is elected and every server is current with it
// (after Start, and after a Kill or Restart before depending on the
// cluster's metadata, e.g. creating streams).
func (c *Cluster) WaitReady() {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ready := true
		for _, s := range c.servers {
			if s == nil {
				continue
			}
			if !s.JetStreamEnabled() || len(c.servers) > 1 && !s.JetStreamIsCurrent() {
				ready = false
			}
		}
		if ready {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("natstest: JetStream not ready")
}

// Shutdown stops every server.
func (c *Cluster) Shutdown() {
	for i := range c.servers {
		c.Kill(i)
	}
}
