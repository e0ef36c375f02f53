package agentorchestrator

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/store"
)

// Publishing is off the commit path: a commit hands its events (and a
// replica its signals) to the publisher and returns at once, so a bus that
// is down or hangs costs streams latency, never a run its progress nor a
// request its answer. The store is the source of truth: a stream that
// misses an event sees the gap in sequences, or reaches its store poll,
// and reads it from the store; a lost wake-up is caught by the
// scheduler's poll, a lost cancel by the executor's store check.
const (
	// publishShards is how many publishes are in flight at once. A run's
	// events always go through the same shard, so they reach the bus in
	// commit order.
	publishShards = 8
	// publishWindow is how many batches a shard holds while its bus call
	// waits; past it new batches are dropped (counted in
	// agentos_bus_errors_total{op="publish_dropped"}).
	publishWindow = 1024
	// publishTimeout bounds one bus call: a bus that does not answer
	// holds a shard this long per batch, then the batch is given up.
	publishTimeout = 2 * time.Second
)

// pubItem is one batch of committed events of one run, or one signal.
type pubItem struct {
	evs []store.Event
	sig *bus.Signal
}

// pubShard is a FIFO drained by at most one goroutine, started when the
// first item arrives and ended when the queue is empty (no goroutine while
// idle, nothing to start or stop).
type pubShard struct {
	mu      sync.Mutex
	q       []pubItem
	running bool
}

// publisher is the orchestrator's asynchronous, bounded bus writer.
type publisher struct {
	s      *Server
	shards [publishShards]pubShard
}

func shardOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % publishShards)
}

// enqueue hands it to its shard; false if the shard's window is full.
func (p *publisher) enqueue(key string, it pubItem) bool {
	sh := &p.shards[shardOf(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.q) >= publishWindow {
		return false
	}
	sh.q = append(sh.q, it)
	if !sh.running {
		sh.running = true
		go p.drain(sh)
	}
	return true
}

// drain sends sh's items one by one until the queue is empty.
func (p *publisher) drain(sh *pubShard) {
	for {
		sh.mu.Lock()
		if len(sh.q) == 0 {
			sh.running = false
			sh.q = nil // let a burst's backing array go
			sh.mu.Unlock()
			return
		}
		it := sh.q[0]
		sh.q[0] = pubItem{}
		sh.q = sh.q[1:]
		sh.mu.Unlock()
		p.send(it)
	}
}

// send makes one bounded bus call; a failure is counted and logged.
func (p *publisher) send(it pubItem) {
	s := p.s
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if it.sig != nil {
		if err := s.bus.Signal(ctx, *it.sig); err != nil {
			s.metrics.busErrors.WithLabelValues("signal").Inc()
			s.log.Warn("send a signal on the bus", "kind", it.sig.Kind, "run_id", it.sig.RunID, "err", err)
		}
		return
	}
	if err := s.bus.Publish(ctx, it.evs...); err != nil {
		s.metrics.busErrors.WithLabelValues("publish").Inc()
		s.log.Warn("publish run events on the bus", "run_id", it.evs[0].RunID, "err", err)
	}
}

// idle reports whether every queued item has been sent.
func (p *publisher) idle() bool {
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		busy := sh.running
		sh.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// wait waits up to d for the queued items to be sent (at shutdown, before
// the bus closes); what is left is given up, the store has it.
func (p *publisher) wait(d time.Duration) {
	deadline := time.Now().Add(d)
	for !p.idle() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}
