package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func testUsage(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("RecordAndFilter", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mk := func(id, tenant, principal, agent, run string, d time.Duration) store.UsageRecord {
			return store.UsageRecord{UsageID: id, TenantID: tenant, PrincipalID: principal, AgentID: agent, RunID: run,
				ModelID: "small", Backend: "builtin", Operation: "chat", InputTokens: 10, OutputTokens: 5,
				CostUSD: 0.001, Time: at(d)}
		}
		recs := []store.UsageRecord{
			mk("usg_3", "ten_a", "prn_a", "agt_1", "run_1", 3*time.Second),
			mk("usg_1", "ten_a", "prn_a", "agt_1", "run_1", time.Second),
			mk("usg_2", "ten_a", "prn_b", "agt_2", "run_2", 2*time.Second),
			mk("usg_4", "ten_b", "prn_a", "agt_1", "run_1", time.Second),
		}
		recs[2].ActorID = "svc_agentos_orchestrator" // made for prn_b by the orchestrator
		for _, r := range recs {
			require.NoError(t, s.RecordUsage(ctx, r))
		}
		requireCode(t, s.RecordUsage(ctx, recs[0]), errs.ErrConflict)

		ids := func(f store.UsageFilter) []string {
			t.Helper()
			got, err := s.ListUsage(ctx, f)
			require.NoError(t, err)
			out := []string{}
			for _, u := range got {
				require.Equal(t, f.TenantID, u.TenantID)
				out = append(out, u.UsageID)
			}
			return out
		}
		require.Equal(t, []string{"usg_1", "usg_2", "usg_3"}, ids(store.UsageFilter{TenantID: "ten_a"}))
		require.Equal(t, []string{"usg_1", "usg_3"}, ids(store.UsageFilter{TenantID: "ten_a", PrincipalID: "prn_a"}))
		require.Equal(t, []string{"usg_2"}, ids(store.UsageFilter{TenantID: "ten_a", AgentID: "agt_2"}))
		actors, err := s.ListUsage(ctx, store.UsageFilter{TenantID: "ten_a"})
		require.NoError(t, err)
		require.Equal(t, []string{"", "svc_agentos_orchestrator", ""},
			[]string{actors[0].ActorID, actors[1].ActorID, actors[2].ActorID}, "actor_id round-trips")
		require.Equal(t, []string{"usg_1", "usg_3"}, ids(store.UsageFilter{TenantID: "ten_a", RunID: "run_1"}))
		require.Equal(t, []string{"usg_2", "usg_3"}, ids(store.UsageFilter{TenantID: "ten_a", Since: at(2 * time.Second)}))
		require.Equal(t, []string{"usg_1"}, ids(store.UsageFilter{TenantID: "ten_a", Until: at(2 * time.Second)}))
		require.Equal(t, []string{}, ids(store.UsageFilter{TenantID: "ten_c"}))

		got, err := s.ListUsage(ctx, store.UsageFilter{TenantID: "ten_b"})
		require.NoError(t, err)
		require.Equal(t, []store.UsageRecord{recs[3]}, got)

		_, err = s.ListUsage(ctx, store.UsageFilter{})
		requireCode(t, err, errs.ErrInvalid)
	})

	t.Run("BatchesAllOrNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mk := func(id string) store.UsageRecord {
			return store.UsageRecord{UsageID: id, TenantID: "ten_a", PrincipalID: "prn_a", ModelID: "small",
				Backend: "builtin", Operation: "chat", InputTokens: 1, OutputTokens: 1, Time: at(time.Second)}
		}
		require.NoError(t, s.RecordUsage(ctx, mk("usg_1"), mk("usg_2"), mk("usg_3")))
		require.NoError(t, s.RecordUsage(ctx))
		// A duplicate or an invalid record fails the whole batch.
		requireCode(t, s.RecordUsage(ctx, mk("usg_4"), mk("usg_2")), errs.ErrConflict)
		requireCode(t, s.RecordUsage(ctx, mk("usg_5"), store.UsageRecord{UsageID: "usg_6"}), errs.ErrInvalid)
		got, err := s.ListUsage(ctx, store.UsageFilter{TenantID: "ten_a"})
		require.NoError(t, err)
		require.Len(t, got, 3)
	})
}

func testFederation(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("Forwards", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		f := store.Forward{TenantID: "ten_a", RunID: "run_remote", PeerStackID: "stack-b", PrincipalID: "prn_a",
			RemoteEventsURL: "https://b.example/v1/runs/run_remote/events", CreatedAt: at(0)}
		require.NoError(t, s.PutForward(ctx, f))
		requireCode(t, s.PutForward(ctx, f), errs.ErrConflict)
		got, err := s.GetForward(ctx, "ten_a", "run_remote")
		require.NoError(t, err)
		require.Equal(t, f, got)
		_, err = s.GetForward(ctx, "ten_b", "run_remote")
		requireCode(t, err, errs.ErrNotFound)
		// The same remote run id in another tenant is a different forward.
		f.TenantID = "ten_b"
		require.NoError(t, s.PutForward(ctx, f))
	})

	t.Run("JTIReplay", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		exp := time.Now().Add(time.Hour)
		ok, err := s.UseJTI(ctx, "jti-1", exp)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = s.UseJTI(ctx, "jti-1", exp)
		require.NoError(t, err)
		require.False(t, ok)
		ok, err = s.UseJTI(ctx, "jti-2", exp)
		require.NoError(t, err)
		require.True(t, ok)
	})

	t.Run("IngestDedupe", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		step := "stp_1"
		mk := func(id string, seq int64) store.IngestedEvent {
			return store.IngestedEvent{Event: store.Event{EventID: id, Sequence: seq, Time: at(time.Duration(seq) * time.Second),
				Type: store.EventStepStarted, TenantID: "ten_a", AgentID: "agt_1", RunID: "run_r", StepID: &step,
				Trace: store.EventTrace{Traceparent: "tp", SpanID: "sp"}, Payload: json.RawMessage(`{"n":1}`)},
				SourceStack: "stack-b", IngestedAt: at(time.Minute)}
		}
		e2, e1 := mk("evt_2", 2), mk("evt_1", 1)
		for _, e := range []store.IngestedEvent{e2, e1} {
			ok, err := s.IngestEvent(ctx, e)
			require.NoError(t, err)
			require.True(t, ok)
		}
		dup := mk("evt_1", 1)
		dup.Event.Type = "changed"
		ok, err := s.IngestEvent(ctx, dup)
		require.NoError(t, err)
		require.False(t, ok)

		other := mk("evt_3", 3)
		other.SourceStack = "stack-c"
		ok, err = s.IngestEvent(ctx, other)
		require.NoError(t, err)
		require.True(t, ok)

		got, err := s.ListIngestedEvents(ctx, "ten_a", "run_r", "")
		require.NoError(t, err)
		require.Len(t, got, 3)
		require.Equal(t, e1.Event, got[0])
		require.Equal(t, e2.Event, got[1])
		got, err = s.ListIngestedEvents(ctx, "ten_a", "run_r", "stack-b")
		require.NoError(t, err)
		require.Equal(t, []store.Event{e1.Event, e2.Event}, got, "one source's events only")

		got, err = s.ListIngestedEvents(ctx, "ten_b", "run_r", "")
		require.NoError(t, err)
		require.Empty(t, got)
	})
}
