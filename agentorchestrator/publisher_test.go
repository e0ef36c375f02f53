package agentorchestrator

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/bus/nats/natstest"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
)

// freezeProxy is a TCP proxy that can freeze: it keeps accepting
// connections and reading from both sides, but forwards nothing while
// frozen, as a NATS server that hangs with its connections open.
type freezeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	thawed *sync.Cond
	frozen bool
	conns  []net.Conn
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &freezeProxy{ln: ln, target: target}
	p.thawed = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *freezeProxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *freezeProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go p.pipe(u, c)
		go p.pipe(c, u)
	}
}

func (p *freezeProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen {
				p.thawed.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

func (p *freezeProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.frozen = false
	p.thawed.Broadcast()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// TestCommitsDoNotWaitForAHungBus: the replica's NATS server hangs (the
// proxy in front of it accepts connections and never answers) and the
// orchestrator keeps working: a run is admitted (its create commits, its
// wake-up is sent) and executes to completion, every commit returning
// while the bus holds its publishes, which are then given up and counted
// in agentos_bus_errors_total. Streams read the events from the store.
func TestCommitsDoNotWaitForAHungBus(t *testing.T) {
	pgURL := pgtest.URL(t)
	nats := natstest.Start(t, natstest.Options{})
	proxy := newFreezeProxy(t, nats.Server(0).Addr().String())
	r := newReplica(t, "hung-bus", pgURL, proxy.URL(), true)
	seedReplicas(t, r.db)
	completed := func(runID string) func() bool {
		return func() bool {
			run, err := r.db.GetRun(context.Background(), "tnt_a", runID)
			require.NoError(t, err)
			return run.Status == store.RunCompleted
		}
	}
	before := r.bundle(t).createRun("tnt_a", "agt_echo", map[string]any{"input": "bus answers"})
	require.Eventually(t, completed(before), 30*time.Second, 10*time.Millisecond)
	errsBefore := busErrors(t, r, "publish")

	proxy.freeze()
	for i := range 3 {
		runID := r.bundle(t).createRun("tnt_a", "agt_echo", map[string]any{"input": "bus hangs " + string(rune('a'+i))})
		require.Eventually(t, completed(runID), 30*time.Second, 10*time.Millisecond,
			"run %s completes while the bus hangs", runID)
		evs, err := r.db.ListEvents(context.Background(), store.ListEventsParams{TenantID: "tnt_a", RunID: runID, Limit: 100})
		require.NoError(t, err)
		require.Equal(t, store.EventRunCompleted, evs[len(evs)-1].Type)
		// Its stream opens and replays it from the store.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		requireOneTerminal(t, readStream(t, r.openStream(ctx, t, runID)), store.EventRunCompleted)
		cancel()
	}
	// The publishes did reach a bus that did not answer: they were given
	// up (not merely fast), and counted.
	require.Eventually(t, func() bool {
		return busErrors(t, r, "publish") > errsBefore
	}, 60*time.Second, 50*time.Millisecond)
	t.Logf("bus errors while the bus hung: publish %v, publish_dropped %v, signal %v",
		busErrors(t, r, "publish")-errsBefore,
		busErrors(t, r, "publish_dropped"),
		busErrors(t, r, "signal"))
}

// busErrors reads agentos_bus_errors_total{op} from the replica's /metrics.
func busErrors(t *testing.T, r *replica, op string) float64 {
	t.Helper()
	resp, err := http.Get(r.http.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `agentos_bus_errors_total{op="`+op+`"} `); ok {
			n, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return n
		}
	}
	return 0
}
