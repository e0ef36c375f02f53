package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

func TestNATSProcKind(t *testing.T) {
	t.Parallel()
	require.IsType(t, natsProc{}, procFor(Service{Name: "nats-2", Kind: KindNATS}))
	require.True(t, natsProc{}.owns("/tmp/agentos\x00serve\x00nats\x00--name\x00nats"))
	require.False(t, natsProc{}.owns("/tmp/agentos\x00serve\x00orchestrator"))
}

// TestManagedNATSLifecycle starts a real `agentos serve nats` as the
// cluster profile does: healthy on its monitor, JetStream usable by a
// client, its store under $AGENTOS_HOME/nats/<name>; Stop (SIGTERM) ends
// it cleanly and leaves no process; a second start reuses the store.
func TestManagedNATSLifecycle(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	n.Exe = testnode.Binary(t)
	client, monitor := testnode.FreeAddr(t), testnode.FreeAddr(t)
	s := Service{Name: "nats", Kind: KindNATS, Addr: client, URL: "nats://" + client, Monitor: monitor,
		Args: []string{"--name", "nats", "--addr", client, "--monitor-addr", monitor}}
	n.Services = append(n.Services, s)
	ctx := context.Background()

	pid, err := n.Start(s)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = n.Stop("nats", 10*time.Second) })
	require.NoError(t, n.WaitHealthy(ctx, s, pid, 60*time.Second))
	require.NoError(t, WaitNATSReady(ctx, n, []Service{s}, 30*time.Second))
	st := n.Inspect(ctx, s)
	require.True(t, st.Healthy, st.Err)
	require.True(t, st.Alive)
	require.Regexp(t, `^2\.\d+\.\d+`, st.Version, "the server's version from its monitor")
	// A client reaches JetStream on it (the check status uses for an
	// external server).
	v, err := externalNATSHealth(ctx, s)
	require.NoError(t, err)
	require.NotEmpty(t, v)
	_, err = os.Stat(filepath.Join(NATSDir(n.Cfg.Home), "nats", "jetstream"))
	require.NoError(t, err, "store under $AGENTOS_HOME/nats/nats")

	was, err := n.Stop("nats", 15*time.Second)
	require.NoError(t, err)
	require.True(t, was)
	require.False(t, ProcessAlive(pid))
	require.False(t, n.Inspect(ctx, s).Healthy)
	require.Contains(t, string(readFile(t, n.LogFile("nats"))), "nats server nats: stopped", "a clean shutdown, not a kill")

	pid, err = n.Start(s)
	require.NoError(t, err)
	require.NoError(t, n.WaitHealthy(ctx, s, pid, 60*time.Second))
	_, err = n.Stop("nats", 15*time.Second)
	require.NoError(t, err)
	require.False(t, ProcessAlive(pid))
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}
