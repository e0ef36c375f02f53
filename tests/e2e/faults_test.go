package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestReadinessFollowsDependencies: an orchestrator and a model-policy
// replica on PostgreSQL and NATS, all real processes. The PostgreSQL
// server is stopped (pg_ctl stop -m fast): both replicas' /readyz answer
// 503 dependency_unavailable naming the store; it is started again on the
// same port: both are ready again by themselves. The NATS server is
// stopped: the orchestrator's /readyz names the bus (model-policy does
// not use it and stays ready); started again: ready. Nothing is
// restarted but the dependencies, and a run created afterwards completes,
// streamed gapless. The logged durations are a report, not assertions.
func TestReadinessFollowsDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pg := startPGServer(t)
	nats := startNATSServer(t)
	node := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_STORE_URL=" + pg.URL, "AGENTOS_BUS_URL=" + nats.URL()}})
	orch, mp := node.URL("orchestrator"), node.URL("model-policy")
	waitReadyz(t, orch, 200, "")
	waitReadyz(t, mp, 200, "")

	pg.Halt()
	halted := time.Now()
	toOrch := waitReadyz(t, orch, 503, "store")
	toMP := waitReadyz(t, mp, 503, "store")
	// Meanwhile a create is refused with the contract's retryable code.
	user := map[string]string{"X-Tenant-Id": "tnt_demo"}
	code, out := runsJSON(t, "POST", orch+"/v1/agents/agt_sample_echo_v1/runs", user, map[string]any{"input": "during the outage"})
	require.Equal(t, 503, code, out)
	require.Equal(t, "dependency_unavailable", out["error"].(map[string]any)["code"], out)
	pg.Resume()
	resumed := time.Now()
	backOrch := waitReadyz(t, orch, 200, "")
	backMP := waitReadyz(t, mp, 200, "")
	t.Logf("PostgreSQL stopped: orchestrator not ready after %s, model-policy after %s; "+
		"started again (%s down): ready again after %s and %s",
		toOrch.Round(time.Millisecond), toMP.Round(time.Millisecond), resumed.Sub(halted).Round(time.Millisecond),
		backOrch.Round(time.Millisecond), backMP.Round(time.Millisecond))

	var err error
	nats.Stop()
	stopped := time.Now()
	toBus := waitReadyz(t, orch, 503, "bus")
	code, _, err = readyz(mp)
	require.NoError(t, err)
	require.Equal(t, 200, code, "model-policy does not use the bus")
	nats.Start()
	started := time.Now()
	backBus := waitReadyz(t, orch, 200, "")
	t.Logf("NATS stopped: orchestrator not ready after %s; started again (%s down): ready again after %s",
		toBus.Round(time.Millisecond), started.Sub(stopped).Round(time.Millisecond), backBus.Round(time.Millisecond))

	// The replicas work again: a run created now completes.
	code, out = runsJSON(t, "POST", orch+"/v1/agents/agt_sample_echo_v1/runs", user, map[string]any{"input": "after the outages"})
	require.Equal(t, 201, code, out)
	runID := out["run"].(map[string]any)["run_id"].(string)
	evs := runsStream(t, orch, runID)
	require.NoError(t, checkStream(evs))
	require.Equal(t, store.EventRunCompleted, evs[len(evs)-1].Type)
}
