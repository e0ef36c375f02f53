package agentorchestrator

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
)

// deltaFlushInterval is how long a run's token deltas gather before they
// are committed as one agentos.model.delta event. Committing each token
// would be one store transaction (and one SSE frame) per token; gathering
// bounds that to about 20 a second per streaming model call while a
// reader still sees text arrive as it is generated. The first fragment
// of a call is committed at once.
const deltaFlushInterval = 50 * time.Millisecond

// deltaStream turns one model step's streamed fragments into
// agentos.model.delta events. Fragments are gathered (add, from the model
// call) and committed by a goroutine of its own, so a slow commit never
// holds up reading the model's stream. Each event is a real event: it
// gets its sequence in the store, in the same compare-and-set on the
// run's status and attempt as every other change (a canceled or taken
// over run gets no more deltas), and is published after the commit.
//
// Payload: step_id, index (0, 1, 2... within one attempt of the call; 0
// again when a call is retried or resumed, so a reader starts the step's
// text over) and text.
type deltaStream struct {
	x      *execution
	stepID string

	mu      sync.Mutex
	pending strings.Builder
	index   int
	failed  bool // a commit failed: no more deltas for this call

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// startDeltas starts the delta committer of a model step.
func (x *execution) startDeltas(ctx context.Context, stepID string) *deltaStream {
	d := &deltaStream{x: x, stepID: stepID, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go d.loop(ctx)
	return d
}

// add gathers one fragment.
func (d *deltaStream) add(delta modelport.Delta) error {
	if delta.Content == "" {
		return nil
	}
	d.mu.Lock()
	d.pending.WriteString(delta.Content)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return nil
}

// restart begins a new attempt of the call: what was gathered and not yet
// committed is dropped and the index starts at 0 again.
func (d *deltaStream) restart() {
	d.mu.Lock()
	d.pending.Reset()
	d.index = 0
	d.mu.Unlock()
}

func (d *deltaStream) loop(ctx context.Context) {
	defer close(d.done)
	for {
		select {
		case <-d.stop:
			return
		case <-d.wake:
		}
		d.commit(ctx)
		t := time.NewTimer(deltaFlushInterval)
		select {
		case <-d.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// close stops the committer and commits what is left, so that every delta
// of the call is in the store before the call's model.completed.
func (d *deltaStream) close(ctx context.Context) {
	close(d.stop)
	<-d.done
	d.commit(ctx)
}

// commit writes the gathered text as one delta event.
func (d *deltaStream) commit(ctx context.Context) {
	d.mu.Lock()
	text := d.pending.String()
	if text == "" || d.failed {
		d.mu.Unlock()
		return
	}
	d.pending.Reset()
	index := d.index
	d.index++
	d.mu.Unlock()
	x := d.x
	ev := x.event(store.EventModelDelta, d.stepID, map[string]any{"step_id": d.stepID, "index": index, "text": text})
	_, err := x.s.commit(ctx, store.RunChange{TenantID: x.run.TenantID, RunID: x.run.RunID,
		FromStatuses: []store.RunStatus{x.from}, ExpectAttempt: x.expectAttempt, Events: []store.Event{ev}})
	if err != nil {
		d.mu.Lock()
		d.failed = true
		d.mu.Unlock()
		// A conflict is a cancel or a takeover: the executor finds out at
		// its next commit. Deltas are not worth failing the run for.
		if !errors.Is(err, errs.ErrConflict) && ctx.Err() == nil {
			x.s.log.Warn("commit model delta", "run_id", x.run.RunID, "step_id", d.stepID, "err", err)
		}
	}
}

// chat makes one model call attempt: streamed into deltas when the run
// asked for token deltas and the port streams, else a plain Chat.
func (x *execution) chat(ctx context.Context, req modelport.ChatRequest, deltas *deltaStream) (modelport.ChatResponse, error) {
	if deltas != nil {
		if st, ok := x.s.cfg.Model.(modelport.Streamer); ok {
			deltas.restart()
			return st.ChatStream(ctx, x.ac, req, deltas.add)
		}
	}
	return x.s.cfg.Model.Chat(ctx, x.ac, req)
}
