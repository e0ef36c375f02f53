package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/supervisor"
)

// clusterChecks are the cluster profile's smoke tests, run after the
// others with the probe tenant: any replica serves any run.
func (s *smokeTests) clusterChecks() []check {
	return []check{
		{name: "run across replicas", service: "orchestrator", fn: s.crossReplicaRun},
		{name: "cancel through gateway", service: "gateway", fn: s.cancelThroughGateway},
	}
}

// entries are the three addresses the cross-replica checks use: the
// first orchestrator replica, the last (the gateway when there is one
// replica), and the gateway.
func clusterEntries(n *supervisor.Node) (first, last, gw supervisor.Service) {
	orchs := servicesOf(n, "orchestrator")
	gw, _ = n.Service("gateway")
	first, last = orchs[0], orchs[len(orchs)-1]
	if len(orchs) == 1 {
		last = gw
	}
	return first, last, gw
}

// at is the probe's client on another base URL.
func (s *smokeTests) at(base string) *apiclient.Client {
	c := *s.probe
	c.BaseURL = base
	return &c
}

// crossReplicaRun creates a run on the first replica and streams it from
// the last: events 1..N without a gap, the terminal one last.
func (s *smokeTests) crossReplicaRun(ctx context.Context) (string, error) {
	if s.probe == nil {
		return "", errors.New("no probe tenant (see the check before)")
	}
	ctx, cancel := context.WithTimeout(ctx, smokeRunTimeout)
	defer cancel()
	first, last, _ := clusterEntries(s.v.n)
	run, err := s.at(first.URL).CreateRun(ctx, sampleAgentID, "agentos validate: cross-replica run", nil)
	if err != nil {
		return "", &checkError{check: "run across replicas", service: first.Name, err: fmt.Errorf("create run on %s: %w", first.Name, err)}
	}
	var evs []store.Event
	err = s.at(last.URL).StreamEvents(ctx, run.RunID, 0, func(ev store.Event) error {
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		return "", &checkError{check: "run across replicas", service: last.Name, err: fmt.Errorf("stream %s from %s: %w", run.RunID, last.Name, err)}
	}
	if err := gapless(evs, store.EventRunCompleted); err != nil {
		return "", fmt.Errorf("run %s created on %s, streamed from %s: %w", run.RunID, first.Name, last.Name, err)
	}
	return fmt.Sprintf("%s created on %s, %d events streamed from %s", run.RunID, first.Name, len(evs), last.Name), nil
}

// gapless checks sequences 1..N with one terminal event, the last, of
// type want.
func gapless(evs []store.Event, want string) error {
	if len(evs) == 0 {
		return errors.New("no events")
	}
	for i, ev := range evs {
		if ev.Sequence != int64(i+1) {
			return fmt.Errorf("event %d has sequence %d, want %d", i+1, ev.Sequence, i+1)
		}
		if store.IsTerminalEvent(ev.Type) && i != len(evs)-1 {
			return fmt.Errorf("terminal event %s at sequence %d is not the last (%d)", ev.Type, ev.Sequence, len(evs))
		}
	}
	if got := evs[len(evs)-1].Type; got != want {
		return fmt.Errorf("last event is %s, want %s", got, want)
	}
	return nil
}

// cancelThroughGateway creates a run on the last replica, cancels it
// through the gateway at once and reads it back from the first: canceled
// with agentos.run.canceled last. The sample run is short, so it may
// complete first: then the cancel must answer conflict and the run read
// back be completed.
func (s *smokeTests) cancelThroughGateway(ctx context.Context) (string, error) {
	if s.probe == nil {
		return "", errors.New("no probe tenant (see the check before)")
	}
	ctx, cancel := context.WithTimeout(ctx, smokeRunTimeout)
	defer cancel()
	first, last, gw := clusterEntries(s.v.n)
	run, err := s.at(last.URL).CreateRun(ctx, sampleAgentID, "agentos validate: cancel through the gateway", nil)
	if err != nil {
		return "", &checkError{check: "cancel through gateway", service: last.Name, err: fmt.Errorf("create run on %s: %w", last.Name, err)}
	}
	want, wantEvent, how := store.RunCanceled, store.EventRunCanceled, "canceled"
	if _, err := s.at(gw.URL).CancelRun(ctx, run.RunID, "agentos validate"); err != nil {
		var ae *errs.Error
		if !errors.As(err, &ae) || ae.Code != errs.Conflict {
			return "", fmt.Errorf("cancel %s through the gateway: %w", run.RunID, err)
		}
		want, wantEvent, how = store.RunCompleted, store.EventRunCompleted, "completed before the cancel (conflict)"
	}
	got, err := waitTerminal(ctx, s.at(first.URL), run.RunID)
	if err != nil {
		return "", &checkError{check: "cancel through gateway", service: first.Name, err: err}
	}
	if got.Status != want {
		return "", fmt.Errorf("run %s reads %s on %s, want %s", run.RunID, got.Status, first.Name, want)
	}
	evs, err := s.at(first.URL).ListEvents(ctx, run.RunID)
	if err != nil {
		return "", &checkError{check: "cancel through gateway", service: first.Name, err: err}
	}
	if err := gapless(evs, wantEvent); err != nil {
		return "", fmt.Errorf("run %s on %s: %w", run.RunID, first.Name, err)
	}
	return fmt.Sprintf("%s created on %s, cancel through the gateway, %s on %s", run.RunID, last.Name, how, first.Name), nil
}

// waitTerminal polls a run until it is terminal.
func waitTerminal(ctx context.Context, c *apiclient.Client, runID string) (store.Run, error) {
	for {
		r, err := c.GetRun(ctx, runID)
		if err != nil || r.Status.Terminal() {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("run %s still %s: %w", runID, r.Status, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sumMetrics is base's metrics, or in the cluster profile the sum over
// every replica of kind: a run created on one replica may execute on
// another (they share the queue).
func sumMetrics(ctx context.Context, n *supervisor.Node, kind, base string) (map[string]float64, error) {
	urls := []string{base}
	if isCluster(n) {
		urls = nil
		for _, s := range servicesOf(n, kind) {
			urls = append(urls, s.URL)
		}
	}
	sum := map[string]float64{}
	for _, u := range urls {
		m, err := apiclient.Metrics(ctx, n.HTTP, u)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum, nil
}
