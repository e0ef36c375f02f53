package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// KindNATS is `agentos serve nats`, an embedded NATS server with
// JetStream (the cluster profile's bus), its store under
// $AGENTOS_HOME/nats/<name>.
const KindNATS = "nats"

// natsProc runs `agentos serve nats` with the service's Args, and checks
// it on its HTTP monitor.
type natsProc struct{}

func (natsProc) prepare(*Node, Service) error { return nil }

func (natsProc) command(n *Node, s Service) (*exec.Cmd, error) { return n.serveCommand(s), nil }

// health asks the monitor's /healthz with js-enabled-only: the server
// accepts clients and has JetStream on (in a cluster, before a meta
// leader is elected, which needs the other servers: they start one after
// the other). A server given by AGENTOS_BUS_URL has no known monitor: a
// client connection (with a JetStream account info) checks it.
func (natsProc) health(ctx context.Context, n *Node, s Service) (string, error) {
	if s.External {
		return externalNATSHealth(ctx, s)
	}
	if err := natsHealthz(ctx, n, s, "/healthz?js-enabled-only=true"); err != nil {
		return "", err
	}
	return natsVersion(ctx, n, s), nil
}

// natsVersion is the server's version from its monitor's /varz ("" when
// it does not say).
func natsVersion(ctx context.Context, n *Node, s Service) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+DialHost(s.Monitor)+"/varz", nil)
	if err != nil {
		return ""
	}
	resp, err := n.HTTP.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct {
		Version string `json:"version"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v)
	return v.Version
}

// natsHealthz GETs a path of the server's HTTP monitor; nil on 200.
func natsHealthz(ctx context.Context, n *Node, s Service, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+DialHost(s.Monitor)+path, nil)
	if err != nil {
		return err
	}
	resp, err := n.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("nats monitor %s%s: %d %s", s.Monitor, path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

func externalNATSHealth(ctx context.Context, s Service) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	dl, _ := ctx.Deadline()
	nc, err := nats.Connect(s.URL, nats.Timeout(time.Until(dl)), nats.NoReconnect())
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", s.DisplayURL(), err)
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.Context(ctx))
	if err != nil {
		return "", err
	}
	if _, err := js.AccountInfo(nats.Context(ctx)); err != nil {
		return "", fmt.Errorf("%s: JetStream: %w", s.DisplayURL(), err)
	}
	return nc.ConnectedServerVersion(), nil
}

func (natsProc) owns(cmdline string) bool {
	return strings.Contains(cmdline, "serve\x00nats")
}

// signal sends SIGTERM: the server shuts down cleanly (its store closed).
func (natsProc) signal(pid int) { agentosProc{}.signal(pid) }

// NATSDir holds the managed NATS servers' stores, one directory each.
func NATSDir(home string) string { return filepath.Join(home, "nats") }

// WaitNATSReady polls every server's full /healthz (JetStream current: in
// a cluster a meta leader elected and known to each) until all answer ok.
func WaitNATSReady(ctx context.Context, n *Node, ss []Service, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, s := range ss {
		for {
			err := natsHealthz(ctx, n, s, "/healthz")
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: JetStream not ready after %s: %v", s.Name, timeout, err)
			case <-time.After(150 * time.Millisecond):
			}
		}
	}
	return nil
}

// ControlNkeyFile is the control plane's NATS user nkey seed of the
// managed bus: its servers let in only this key and registered workers.
func ControlNkeyFile(home string) string { return filepath.Join(home, "secrets", "nats-control.nk") }

// EnsureControlNkey returns ControlNkeyFile, creating the key (0600) on
// first use.
func EnsureControlNkey(home string) (string, error) {
	p := ControlNkeyFile(home)
	if b, err := os.ReadFile(p); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return p, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, seed, 0o600)
}
