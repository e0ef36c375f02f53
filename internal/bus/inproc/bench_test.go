package inproc_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/bus/inproc"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
)

// The in-process bus next to the events.Hub it replaces: the cost of one
// Publish of one event to runs with live subscribers. Run with
//
//	go test -run '^$' -bench . -benchmem ./internal/bus/inproc/
//
// Each op builds a fresh event_id for both (the bus dedupes by it; the hub
// ignores it), so the difference is the bus's own work.

type publisher interface {
	publish(e store.Event)
	// subscribe starts a reader that drains the run's events until done.
	subscribe(tenant, run string, done <-chan struct{}, wg *sync.WaitGroup)
}

type hubPub struct{ h *events.Hub }

func (p hubPub) publish(e store.Event) { p.h.Publish(e) }
func (p hubPub) subscribe(tenant, run string, done <-chan struct{}, wg *sync.WaitGroup) {
	s := p.h.Subscribe(tenant, run)
	wg.Go(func() {
		defer s.Close()
		for {
			select {
			case <-s.C:
				s.Lagged()
			case <-done:
				return
			}
		}
	})
}

type busPub struct{ b *inproc.Bus }

func (p busPub) publish(e store.Event) { _ = p.b.Publish(context.Background(), e) }
func (p busPub) subscribe(tenant, run string, done <-chan struct{}, wg *sync.WaitGroup) {
	wg.Go(func() {
		for {
			// A reader that lags is dropped; it subscribes again (a real one
			// would resume from the store), so the benchmark keeps a
			// subscriber on every run.
			s, err := p.b.Subscribe(context.Background(), bus.SubscribeParams{TenantID: tenant, RunID: run})
			if err != nil {
				return
			}
			for open := true; open; {
				select {
				case _, open = <-s.C():
				case <-done:
					s.Close()
					return
				}
			}
		}
	})
}

func benchPublish(b *testing.B, newPub func() publisher, runs int, parallel bool) {
	p := newPub()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range runs {
		p.subscribe("ten_a", "run_"+strconv.Itoa(r), done, &wg)
	}
	var n atomic.Int64
	ev := func() store.Event {
		i := n.Add(1)
		return store.Event{EventID: "evt_" + strconv.FormatInt(i, 10), Sequence: i, TenantID: "ten_a",
			RunID: "run_" + strconv.Itoa(int(i)%max(runs, 1)), Type: "step.completed"}
	}
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				p.publish(ev())
			}
		})
	} else {
		for b.Loop() {
			p.publish(ev())
		}
	}
	b.StopTimer()
	close(done)
	wg.Wait()
}

func BenchmarkPublish(b *testing.B) {
	impls := []struct {
		name string
		new  func() publisher
	}{
		{"hub", func() publisher { return hubPub{events.NewHub()} }},
		{"inproc", func() publisher { return busPub{inproc.New(inproc.Config{})} }},
	}
	for _, runs := range []int{0, 1, 100} {
		for _, parallel := range []bool{false, true} {
			for _, impl := range impls {
				name := impl.name + "/runs=" + strconv.Itoa(runs)
				if parallel {
					name += "/parallel"
				}
				b.Run(name, func(b *testing.B) { benchPublish(b, impl.new, runs, parallel) })
			}
		}
	}
}
