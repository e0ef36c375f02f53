package natsd

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

type registry struct {
	mu      sync.Mutex
	workers []store.Worker
}

func (r *registry) list(context.Context) ([]store.Worker, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]store.Worker(nil), r.workers...), nil
}

func (r *registry) revoke(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.workers {
		if r.workers[i].WorkerID == id {
			r.workers[i].Status = store.WorkerRevoked
		}
	}
}

func newUser(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	return kp, pub
}

func connectAs(url string, kp nkeys.KeyPair, opts ...natsio.Option) (*natsio.Conn, error) {
	pub, _ := kp.PublicKey()
	return natsio.Connect(url, append([]natsio.Option{natsio.Nkey(pub, kp.Sign), natsio.MaxReconnects(0)}, opts...)...)
}

// TestAuthLetsInOnlyKnownKeysWithTheirOwnSubjects runs the server with
// Auth on: the control key may do anything, a registered worker only its
// own subjects, an unknown key nothing; revoking a worker in the registry
// cuts its live connection and refuses it afterwards.
func TestAuthLetsInOnlyKnownKeysWithTheirOwnSubjects(t *testing.T) {
	t.Parallel()
	control, controlPub := newUser(t)
	worker, workerPub := newUser(t)
	stranger, _ := newUser(t)
	reg := &registry{workers: []store.Worker{{WorkerID: "w1", PublicKey: workerPub, Status: store.WorkerActive,
		Labels: map[string]string{"gpu": "a100"}}}}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Name: "nats", Addr: addr, MonitorAddr: freeAddr(t), StoreDir: filepath.Join(t.TempDir(), "js"),
			Auth: &Auth{ControlKey: controlPub, Workers: reg.list, Refresh: 100 * time.Millisecond}}, t.Logf)
	}()
	t.Cleanup(func() { cancel(); <-done })
	url := "nats://" + addr
	var nc *natsio.Conn
	require.Eventually(t, func() bool {
		var err error
		nc, err = connectAs(url, control)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the control key connects")
	defer nc.Close()
	sub, err := nc.SubscribeSync("agentos.wk.hb.*")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	_, err = connectAs(url, stranger)
	require.ErrorContains(t, err, "Authorization Violation", "an unknown key is refused")

	asyncErrs := make(chan error, 8)
	closed := make(chan struct{})
	wc, err := connectAs(url, worker,
		natsio.ErrorHandler(func(_ *natsio.Conn, _ *natsio.Subscription, err error) { asyncErrs <- err }),
		natsio.ClosedHandler(func(*natsio.Conn) { close(closed) }))
	require.NoError(t, err, "a registered worker connects")
	defer wc.Close()
	require.NoError(t, wc.Publish("agentos.wk.hb.w2", []byte("forged")))
	require.NoError(t, wc.Publish("agentos.wk.hb.w1", []byte("mine")))
	require.NoError(t, wc.Flush())
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "agentos.wk.hb.w1", m.Subject, "only its own heartbeat gets through")
	select {
	case err := <-asyncErrs:
		require.ErrorContains(t, err, "Permissions Violation")
	case <-time.After(5 * time.Second):
		t.Fatal("publishing another worker's subject was not refused")
	}
	_, err = wc.SubscribeSync("agentos.wk.hb.*")
	require.NoError(t, err)
	require.NoError(t, wc.Flush())
	select {
	case err := <-asyncErrs:
		require.ErrorContains(t, err, "Permissions Violation", "it may not listen to others either")
	case <-time.After(5 * time.Second):
		t.Fatal("subscribing to every heartbeat was not refused")
	}

	reg.revoke("w1")
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked worker's connection stayed open")
	}
	_, err = connectAs(url, worker)
	require.ErrorContains(t, err, "Authorization Violation", "a revoked key is refused")
	require.NoError(t, nc.Publish("agentos.anything."+strconv.Itoa(1), nil), "the control key keeps every subject")
	require.NoError(t, nc.Flush())
}
