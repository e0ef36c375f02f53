package supervisor

import (
	"context"
	"net/url"
	"os/exec"
	"strings"
	"syscall"

	"github.com/nexixai/agentos/internal/apiclient"
)

// proc is how one kind of process is prepared, started, checked and
// stopped. A new kind of process (a NATS server) is one more proc and one
// more case in procFor.
type proc interface {
	// prepare runs before each start (creating the PostgreSQL cluster).
	prepare(n *Node, s Service) error
	// command is the command to start, without its output and session.
	command(n *Node, s Service) (*exec.Cmd, error)
	// health checks the running process; version may be "".
	health(ctx context.Context, n *Node, s Service) (version string, err error)
	// owns reports whether a command line (NUL-separated) is this kind's.
	owns(cmdline string) bool
	// signal asks pid to stop.
	signal(pid int)
}

// procFor is the proc of a service's kind.
func procFor(s Service) proc {
	switch s.KindOf() {
	case KindPostgres:
		return postgresProc{}
	case KindNATS:
		return natsProc{}
	}
	return agentosProc{}
}

// agentosProc is `agentos serve <kind>`, checked over HTTP.
type agentosProc struct{}

func (agentosProc) prepare(*Node, Service) error { return nil }

func (agentosProc) command(n *Node, s Service) (*exec.Cmd, error) { return n.serveCommand(s), nil }

func (agentosProc) health(ctx context.Context, n *Node, s Service) (string, error) {
	h, err := apiclient.GetHealth(ctx, n.HTTP, s.URL, s.HealthPath)
	return h.Version, err
}

func (agentosProc) owns(cmdline string) bool { return strings.Contains(cmdline, "serve") }

// signal sends SIGTERM to the process group, so whatever a service
// started goes with it.
func (agentosProc) signal(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
}

// redactURL hides a URL's password (unparseable URLs are hidden whole).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
