package nats_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/nexixai/agentos/internal/bus"
	natsbus "github.com/nexixai/agentos/internal/bus/nats"
	"github.com/nexixai/agentos/internal/bus/nats/natstest"
	"github.com/nexixai/agentos/internal/store"
)

// BenchmarkNATS measures, on one embedded server (file storage, replicas
// 1), with the default sync interval and with sync_interval: always:
//
//   - publish: one event, until its ack (what a commit's Publish costs);
//
//   - deliver: one event from Publish until a run subscriber on another
//     connection has it (the cross-replica latency SSE adds).
//
//     go test -run '^$' -bench NATS -benchmem ./internal/bus/nats/
func BenchmarkNATS(b *testing.B) {
	for _, sync := range []bool{false, true} {
		name := "sync=interval"
		if sync {
			name = "sync=always"
		}
		srv := natstest.Start(b, natstest.Options{SyncAlways: sync})
		cfg := natsbus.Config{URL: srv.URL()}
		pub, sub := dial(b, cfg), dial(b, cfg)
		ctx := context.Background()
		var seq int64
		next := func(run string) store.Event {
			seq++
			return store.Event{EventID: "evt_" + name + strconv.FormatInt(seq, 10), Sequence: seq, TenantID: "ten_a",
				RunID: run, Type: "step.completed", Payload: []byte(`{"output":"a few bytes of step output"}`)}
		}
		b.Run(name+"/publish", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := pub.Publish(ctx, next("run_pub")); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/deliver", func(b *testing.B) {
			s, err := sub.Subscribe(ctx, bus.SubscribeParams{TenantID: "ten_a", RunID: "run_deliver"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ReportAllocs()
			for b.Loop() {
				if err := pub.Publish(ctx, next("run_deliver")); err != nil {
					b.Fatal(err)
				}
				if _, ok := <-s.C(); !ok {
					b.Fatal("subscription ended")
				}
			}
		})
	}
}
