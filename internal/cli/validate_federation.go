package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/supervisor"
)

// federation runs the federated profile's checks after node A's smoke
// tests: both peers files, each node's peer API reached over mTLS with the
// other node's certificate (info and capabilities), a run forwarded from A
// to B through A's federation client API, its events streamed back through
// A (gapless sequence 1..N, terminal event last), and the run as node B's
// orchestrator sees it.
func (v *validator) federation(ctx context.Context, tenant *apiclient.Client) error {
	a, b := v.n, v.n.B
	if v.rep.Federation == nil {
		v.rep.Federation = &FederationReport{Peers: map[string]string{}, Checks: []CheckResult{}}
	}
	var fwd federation.Forwarded
	var streamed []store.Event
	checks := []check{
		{name: "peers configured", service: "federation", fn: func(context.Context) (string, error) {
			return checkPeersFiles(a, b)
		}},
		{name: "a→b peer info over mTLS", service: "federation", node: b, fn: func(ctx context.Context) (string, error) {
			return probePeer(ctx, a, b)
		}},
		{name: "b→a peer info over mTLS", service: "federation", node: a, fn: func(ctx context.Context) (string, error) {
			return probePeer(ctx, b, a)
		}},
		{name: "forward a→b", service: "federation", fn: func(ctx context.Context) (string, error) {
			var err error
			fwd, err = forwardRun(ctx, tenant, a.Cfg.FederationURL, b.Cfg.StackID)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s created on %s as %s", fwd.RemoteRunID, fwd.RemoteStackID, fwd.TenantID), nil
		}},
		{name: "stream back through a", service: "federation", fn: func(ctx context.Context) (string, error) {
			if fwd.RemoteRunID == "" {
				return "", errors.New("no forwarded run to stream")
			}
			ctx, cancel := context.WithTimeout(ctx, smokeRunTimeout)
			defer cancel()
			var err error
			streamed, err = streamForwarded(ctx, tenant, a.Cfg.FederationURL, fwd, func(ev store.Event) {
				v.p.Status(fmt.Sprintf("forwarded run %s: event %d %s", fwd.RemoteRunID, ev.Sequence, strings.TrimPrefix(ev.Type, "agentos.")))
			})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d events, sequence 1..%d, last %s", len(streamed), len(streamed), streamed[len(streamed)-1].Type), nil
		}},
		{name: "forwarded run on b", service: "orchestrator", node: b, fn: func(ctx context.Context) (string, error) {
			return checkRunOnB(ctx, b, fwd, len(streamed))
		}},
	}
	return v.runChecks(ctx, "federation checks passed", checks, &v.rep.Federation.Checks)
}

// checkPeersFiles makes sure each node lists the other as a peer at its
// peer API URL.
func checkPeersFiles(a, b *supervisor.Node) (string, error) {
	for _, x := range []struct{ self, other *supervisor.Node }{{a, b}, {b, a}} {
		path := nodeFederationFiles(x.self).Peers
		ps, err := peers.Load(path)
		if err != nil {
			return "", &checkError{check: "peers configured", service: "federation", node: x.self,
				next: "agentos up --profile federated", err: fmt.Errorf("node %s peers file: %w", x.self.Name, err)}
		}
		found := false
		for _, p := range ps {
			if p.StackID == x.other.Cfg.StackID {
				found = true
				if want := peerURL(x.other.Cfg); p.FederationURL != want {
					return "", &checkError{check: "peers configured", service: "federation", node: x.self,
						next: "agentos up --profile federated",
						err:  fmt.Errorf("node %s lists %s at %s, want %s (%s)", x.self.Name, p.StackID, p.FederationURL, want, path)}
				}
			}
		}
		if !found {
			return "", &checkError{check: "peers configured", service: "federation", node: x.self,
				next: "agentos up --profile federated",
				err:  fmt.Errorf("node %s does not list %s in %s", x.self.Name, x.other.Cfg.StackID, path)}
		}
	}
	return fmt.Sprintf("%s lists %s and %s lists %s", a.Cfg.StackID, b.Cfg.StackID, b.Cfg.StackID, a.Cfg.StackID), nil
}

// probePeer calls to's mTLS peer API with from's node certificate and checks
// its peer info names to's stack and its capabilities include forwarding
// and event streaming.
func probePeer(ctx context.Context, from, to *supervisor.Node) (string, error) {
	f := nodeFederationFiles(from)
	nt, err := pki.LoadNodeTLS(f.CA, f.Cert, f.Key)
	if err != nil {
		return "", &checkError{check: from.Name + "→" + to.Name + " peer info over mTLS", service: "federation", node: from,
			next: "agentos up --profile federated", err: fmt.Errorf("node %s certificate: %w", from.Name, err)}
	}
	hc := outbound.Client(outbound.FromConfig(from.Cfg), nt.ClientConfig(nil, ""))
	hc.Timeout = 10 * time.Second
	defer hc.CloseIdleConnections()
	c := &apiclient.Client{HTTP: hc}
	base := peerURL(to.Cfg)
	var info struct {
		Peer federation.PeerInfo `json:"peer"`
	}
	if err := c.Do(ctx, http.MethodGet, base, "/v1/federation/peer", nil, &info); err != nil {
		return "", fmt.Errorf("GET %s/v1/federation/peer with %s's certificate: %w", base, from.Cfg.StackID, err)
	}
	if info.Peer.StackID != to.Cfg.StackID {
		return "", fmt.Errorf("%s answers as stack %q, want %s", base, info.Peer.StackID, to.Cfg.StackID)
	}
	var caps struct {
		Capabilities federation.Capabilities `json:"capabilities"`
	}
	if err := c.Do(ctx, http.MethodGet, base, "/v1/federation/peer/capabilities", nil, &caps); err != nil {
		return "", fmt.Errorf("GET %s/v1/federation/peer/capabilities: %w", base, err)
	}
	for _, want := range []string{federation.CapRunsForward, federation.CapEventsStream} {
		if !caps.Capabilities.Has(want) {
			return "", fmt.Errorf("%s does not offer %s", to.Cfg.StackID, want)
		}
	}
	return fmt.Sprintf("%s (region %s, version %s) offers %s, %s", info.Peer.StackID, info.Peer.Region, info.Peer.Build.Version,
		federation.CapRunsForward, federation.CapEventsStream), nil
}

// forwardRun asks the federation client API at base to run the sample
// agent on stack target.
func forwardRun(ctx context.Context, c *apiclient.Client, base, target string) (federation.Forwarded, error) {
	body := map[string]any{"forward": map[string]any{
		"target_selector": map[string]any{"stack_id": target,
			"required_capabilities": []string{"runs.forward", "events_stream"}},
		"run_request": map[string]any{"agent_id": sampleAgentID,
			"input":           map[string]any{"type": "text", "text": "agentos validate: federated smoke test"},
			"idempotency_key": "validate-fed-" + time.Now().UTC().Format("20060102T150405.000000000")},
	}}
	var out struct {
		Forwarded federation.Forwarded `json:"forwarded"`
	}
	if err := c.Do(ctx, http.MethodPost, base, "/v1/federation/runs:forward", body, &out); err != nil {
		return out.Forwarded, fmt.Errorf("POST %s/v1/federation/runs:forward: %w", base, err)
	}
	f := out.Forwarded
	switch {
	case f.RemoteStackID != target:
		return f, fmt.Errorf("forwarded to %q, want %s", f.RemoteStackID, target)
	case f.RemoteRunID == "":
		return f, errors.New("forward answered without remote_run_id")
	case f.RemoteEventsURL == "":
		return f, errors.New("forward answered without remote_events_url")
	}
	return f, nil
}

// streamForwarded reads the forwarded run's events over SSE through the
// federation client API at base until the terminal event, and checks them:
// the run and tenant of the forward, sequence 1..N without gaps, the
// terminal event last and agentos.run.completed.
func streamForwarded(ctx context.Context, c *apiclient.Client, base string, f federation.Forwarded, progress func(store.Event)) ([]store.Event, error) {
	var evs []store.Event
	err := c.Follow(ctx, base, f.RemoteEventsURL, func(ev store.Event) error {
		evs = append(evs, ev)
		progress(ev)
		return nil
	})
	if err != nil {
		return evs, fmt.Errorf("after %d events: %w", len(evs), err)
	}
	return evs, checkEventSequence(evs, f)
}

// checkEventSequence checks a forwarded run's streamed events.
func checkEventSequence(evs []store.Event, f federation.Forwarded) error {
	if len(evs) == 0 {
		return errors.New("the stream ended without events")
	}
	for i, ev := range evs {
		switch {
		case ev.Sequence != int64(i+1):
			return fmt.Errorf("event %d has sequence %d: want gapless 1..N", i+1, ev.Sequence)
		case ev.RunID != f.RemoteRunID:
			return fmt.Errorf("event %d belongs to run %q, want %s", ev.Sequence, ev.RunID, f.RemoteRunID)
		case f.TenantID != "" && ev.TenantID != f.TenantID:
			return fmt.Errorf("event %d belongs to tenant %q, want %s", ev.Sequence, ev.TenantID, f.TenantID)
		case i < len(evs)-1 && store.IsTerminalEvent(ev.Type):
			return fmt.Errorf("terminal event %s at sequence %d is not the last", ev.Type, ev.Sequence)
		}
	}
	last := evs[len(evs)-1]
	if !store.IsTerminalEvent(last.Type) {
		return fmt.Errorf("the stream ended after %s (sequence %d) without a terminal event", last.Type, last.Sequence)
	}
	if last.Type != store.EventRunCompleted {
		return fmt.Errorf("the forwarded run ended with %s, want %s: %s", last.Type, store.EventRunCompleted, string(last.Payload))
	}
	return nil
}

// checkRunOnB reads the forwarded run from node B's orchestrator with node
// B's tenant-admin credentials: it must be completed there with the events
// that were streamed back.
func checkRunOnB(ctx context.Context, b *supervisor.Node, f federation.Forwarded, streamed int) (string, error) {
	if f.RemoteRunID == "" {
		return "", errors.New("no forwarded run to look up")
	}
	creds, err := loadCredentials(b.Cfg.CredentialsFile())
	if err != nil {
		return "", &checkError{check: "forwarded run on b", service: "orchestrator", node: b, next: "agentos up --profile federated", err: err}
	}
	c := &apiclient.Client{BaseURL: b.Cfg.OrchestratorURL, Token: creds.TenantAdmin.Token, HTTP: b.HTTP}
	run, err := c.GetRun(ctx, f.RemoteRunID)
	if err != nil {
		return "", fmt.Errorf("GET run %s on %s: %w", f.RemoteRunID, b.Cfg.StackID, err)
	}
	if run.Status != store.RunCompleted {
		return "", fmt.Errorf("run %s is %s on %s, want completed", run.RunID, run.Status, b.Cfg.StackID)
	}
	evs, err := c.ListEvents(ctx, f.RemoteRunID)
	if err != nil {
		return "", fmt.Errorf("list events of %s on %s: %w", f.RemoteRunID, b.Cfg.StackID, err)
	}
	if len(evs) != streamed {
		return "", fmt.Errorf("%s holds %d events of %s, but %d were streamed back through node a", b.Cfg.StackID, len(evs), run.RunID, streamed)
	}
	return fmt.Sprintf("%s completed on %s with %d events", run.RunID, b.Cfg.StackID, len(evs)), nil
}
