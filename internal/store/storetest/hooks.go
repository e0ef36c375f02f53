package storetest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// testWebhooks holds the outbox to its contract: deliveries are written
// with the events that cause them, claimed by one claimant at a time,
// finished only by their claimant, and listed per run and tenant.
func testWebhooks(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("OutboxFollowsEvents", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := newRun("ten_a", "agt_1", at(0))
		_, err := s.CreateRun(ctx, store.CreateRunParams{Run: r, FirstEvent: firstEvent(), Webhooks: []store.WebhookTarget{
			{URL: "https://a.example/hook", Events: store.WebhookEventsAll},
			{URL: "https://b.example/hook", Events: store.WebhookEventsTerminal, EndpointID: "whe_default"},
		}})
		require.NoError(t, err)
		plain := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		for _, id := range []string{r.RunID, plain.RunID} {
			_, err = s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: id,
				Events: []store.Event{event(store.EventStepStarted, 1), event(store.EventRunCompleted, 2)}})
			require.NoError(t, err)
		}
		ds, err := s.ListWebhookDeliveries(ctx, "ten_a", r.RunID)
		require.NoError(t, err)
		type row struct {
			seq      int64
			url, typ string
		}
		var got []row
		for _, d := range ds {
			got = append(got, row{d.Sequence, d.URL, d.EventType})
			require.Equal(t, store.DeliveryPending, d.Status)
			require.NotNil(t, d.NextAttemptAt)
			require.Empty(t, d.Attempts)
			require.NotEmpty(t, d.EventID)
		}
		require.ElementsMatch(t, []row{
			{1, "https://a.example/hook", store.EventRunCreated},
			{2, "https://a.example/hook", store.EventStepStarted},
			{3, "https://a.example/hook", store.EventRunCompleted},
			{3, "https://b.example/hook", store.EventRunCompleted},
		}, got)
		ds, err = s.ListWebhookDeliveries(ctx, "ten_a", plain.RunID)
		require.NoError(t, err)
		require.Empty(t, ds, "a run without targets has no deliveries")
		_, err = s.ListWebhookDeliveries(ctx, "ten_b", r.RunID)
		requireCode(t, err, errs.ErrNotFound)
	})

	t.Run("ClaimFinishRetry", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := newRun("ten_a", "agt_1", at(0))
		_, err := s.CreateRun(ctx, store.CreateRunParams{Run: r, FirstEvent: firstEvent(),
			Webhooks: []store.WebhookTarget{{URL: "https://a.example/hook", Events: store.WebhookEventsAll}}})
		require.NoError(t, err)
		now := time.Now().UTC().Truncate(time.Microsecond).Add(time.Minute)
		// Concurrent claimants: each delivery goes to exactly one.
		var mu sync.Mutex
		claimed := map[string]string{}
		var wg sync.WaitGroup
		for _, owner := range []string{"w1", "w2", "w3"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ds, err := s.ClaimWebhookDeliveries(ctx, store.ClaimDeliveriesParams{Owner: owner, Now: now, Lease: time.Minute})
				require.NoError(t, err)
				mu.Lock()
				defer mu.Unlock()
				for _, d := range ds {
					require.Empty(t, claimed[d.DeliveryID], "claimed twice")
					claimed[d.DeliveryID] = owner
				}
			}()
		}
		wg.Wait()
		require.Len(t, claimed, 1)
		var id, owner string
		for id, owner = range claimed {
		}
		again, err := s.ClaimWebhookDeliveries(ctx, store.ClaimDeliveriesParams{Owner: "w9", Now: now, Lease: time.Minute})
		require.NoError(t, err)
		require.Empty(t, again, "a leased delivery is not claimed again")

		next := now.Add(10 * time.Second)
		requireCode(t, s.FinishWebhookAttempt(ctx, store.FinishAttemptParams{TenantID: "ten_a", DeliveryID: id, Owner: "w9",
			Attempt: store.WebhookAttempt{Attempt: 1, At: now, StatusCode: 500}, Status: store.DeliveryPending, NextAttemptAt: &next}),
			errs.ErrConflict)
		require.NoError(t, s.FinishWebhookAttempt(ctx, store.FinishAttemptParams{TenantID: "ten_a", DeliveryID: id, Owner: owner,
			Attempt: store.WebhookAttempt{Attempt: 1, At: now, StatusCode: 500, Error: "HTTP 500", DurationMs: 3},
			Status:  store.DeliveryPending, NextAttemptAt: &next}))
		none, err := s.ClaimWebhookDeliveries(ctx, store.ClaimDeliveriesParams{Owner: "w1", Now: now, Lease: time.Minute})
		require.NoError(t, err)
		require.Empty(t, none, "not due before its next attempt")
		ds, err := s.ClaimWebhookDeliveries(ctx, store.ClaimDeliveriesParams{Owner: "w2", Now: next, Lease: time.Minute})
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.Len(t, ds[0].Attempts, 1)
		require.Equal(t, 500, ds[0].Attempts[0].StatusCode)
		done := next.Add(time.Second)
		require.NoError(t, s.FinishWebhookAttempt(ctx, store.FinishAttemptParams{TenantID: "ten_a", DeliveryID: id, Owner: "w2",
			Attempt: store.WebhookAttempt{Attempt: 2, At: done, StatusCode: 204}, Status: store.DeliverySucceeded}))
		list, err := s.ListWebhookDeliveries(ctx, "ten_a", r.RunID)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, store.DeliverySucceeded, list[0].Status)
		require.Nil(t, list[0].NextAttemptAt)
		require.NotNil(t, list[0].CompletedAt)
		require.True(t, done.Equal(*list[0].CompletedAt))
		require.Equal(t, []int{500, 204}, []int{list[0].Attempts[0].StatusCode, list[0].Attempts[1].StatusCode})
		late, err := s.ClaimWebhookDeliveries(ctx, store.ClaimDeliveriesParams{Owner: "w1", Now: done.Add(time.Hour), Lease: time.Minute})
		require.NoError(t, err)
		require.Empty(t, late, "a finished delivery is never claimed")
	})

	t.Run("ExpiredLeaseReclaimed", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := newRun("ten_a", "agt_1", at(0))
		_, err := s.CreateRun(ctx, store.CreateRunParams{Run: r, FirstEvent: firstEvent(),
			Webhooks: []store.WebhookTarget{{URL: "https://a.example/hook", Events: store.WebhookEventsAll}}})
		require.NoError(t, err)
		now := time.Now().UTC().Add(time.Minute)
		ds, err := s.ClaimWebhookDeliveries(ctx, store.ClaimDeliveriesParams{Owner: "dead", Now: now, Lease: time.Second})
		require.NoError(t, err)
		require.Len(t, ds, 1)
		ds, err = s.ClaimWebhookDeliveries(ctx, store.ClaimDeliveriesParams{Owner: "alive", Now: now.Add(2 * time.Second), Lease: time.Second})
		require.NoError(t, err)
		require.Len(t, ds, 1, "a claimant that died loses the delivery when its lease ends")
		requireCode(t, s.FinishWebhookAttempt(ctx, store.FinishAttemptParams{TenantID: "ten_a", DeliveryID: ds[0].DeliveryID,
			Owner: "dead", Attempt: store.WebhookAttempt{Attempt: 1, At: now}, Status: store.DeliverySucceeded}), errs.ErrConflict)
	})

	t.Run("EndpointsAndSecrets", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := store.WebhookEndpoint{TenantID: "ten_a", EndpointID: "whe_b", URL: "https://b.example", Events: "all", CreatedAt: at(0), UpdatedAt: at(0)}
		require.NoError(t, s.PutWebhookEndpoint(ctx, e))
		a := e
		a.EndpointID, a.URL = "whe_a", "https://a.example"
		require.NoError(t, s.PutWebhookEndpoint(ctx, a))
		upd := e
		upd.URL, upd.Events, upd.CreatedAt, upd.UpdatedAt = "https://b2.example", "terminal", at(time.Hour), at(time.Hour)
		require.NoError(t, s.PutWebhookEndpoint(ctx, upd))
		list, err := s.ListWebhookEndpoints(ctx, "ten_a")
		require.NoError(t, err)
		upd.CreatedAt = at(0)
		require.Equal(t, []store.WebhookEndpoint{a, upd}, list)
		other, err := s.ListWebhookEndpoints(ctx, "ten_b")
		require.NoError(t, err)
		require.Empty(t, other)
		requireCode(t, s.DeleteWebhookEndpoint(ctx, "ten_b", "whe_a"), errs.ErrNotFound)
		require.NoError(t, s.DeleteWebhookEndpoint(ctx, "ten_a", "whe_a"))
		requireCode(t, s.DeleteWebhookEndpoint(ctx, "ten_a", "whe_a"), errs.ErrNotFound)

		first, err := s.EnsureWebhookSecret(ctx, store.WebhookSecret{TenantID: "ten_a", Secret: "whsec_one", CreatedAt: at(0)})
		require.NoError(t, err)
		require.Equal(t, "whsec_one", first.Secret)
		again, err := s.EnsureWebhookSecret(ctx, store.WebhookSecret{TenantID: "ten_a", Secret: "whsec_two", CreatedAt: at(time.Hour)})
		require.NoError(t, err)
		require.Equal(t, "whsec_one", again.Secret, "an existing secret is kept")
		rot, err := s.RotateWebhookSecret(ctx, store.WebhookSecret{TenantID: "ten_a", Secret: "whsec_new", CreatedAt: at(time.Hour), PreviousUntil: at(25 * time.Hour)})
		require.NoError(t, err)
		require.Equal(t, "whsec_new", rot.Secret)
		require.Equal(t, "whsec_one", rot.Previous)
		require.True(t, at(25*time.Hour).Equal(rot.PreviousUntil))
		b, err := s.EnsureWebhookSecret(ctx, store.WebhookSecret{TenantID: "ten_b", Secret: "whsec_b", CreatedAt: at(0)})
		require.NoError(t, err)
		require.Equal(t, "whsec_b", b.Secret, "secrets are per tenant")
	})
}

func newSchedule(tenantID, id string, next time.Time) store.Schedule {
	return store.Schedule{TenantID: tenantID, ScheduleID: id, AgentID: "agt_1", Every: "1s", Timezone: "UTC",
		Input: json.RawMessage(`{"type":"text","text":"tick"}`), Status: store.ScheduleActive, MisfirePolicy: store.MisfireSkip,
		PrincipalID: "prn_alice", Scopes: []string{"runs:create"}, Roles: []string{"tenant_user"}, NextRunAt: &next,
		CreatedAt: at(0), UpdatedAt: at(0)}
}

func testSchedules(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("CRUDAndTenancy", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := newSchedule("ten_a", "sch_1", at(time.Minute))
		a.Cron, a.Every, a.ThreadID, a.MisfirePolicy, a.CatchUpMax = "*/5 * * * *", "", "thr_1", store.MisfireCatchUp, 3
		require.NoError(t, s.CreateSchedule(ctx, a))
		requireCode(t, s.CreateSchedule(ctx, a), errs.ErrConflict)
		require.NoError(t, s.CreateSchedule(ctx, newSchedule("ten_a", "sch_2", at(time.Minute))))
		got, err := s.GetSchedule(ctx, "ten_a", "sch_1")
		require.NoError(t, err)
		require.Equal(t, a, got)
		_, err = s.GetSchedule(ctx, "ten_b", "sch_1")
		requireCode(t, err, errs.ErrNotFound)
		page, next, err := s.ListSchedules(ctx, store.ListSchedulesParams{TenantID: "ten_a", Limit: 1})
		require.NoError(t, err)
		require.Len(t, page, 1)
		require.Equal(t, "sch_1", next)
		page, next, err = s.ListSchedules(ctx, store.ListSchedulesParams{TenantID: "ten_a", Cursor: next})
		require.NoError(t, err)
		require.Equal(t, "sch_2", page[0].ScheduleID)
		require.Empty(t, next)

		paused, err := s.SetScheduleStatus(ctx, "ten_a", "sch_1", store.SchedulePaused, nil, at(time.Hour))
		require.NoError(t, err)
		require.Equal(t, store.SchedulePaused, paused.Status)
		require.Nil(t, paused.NextRunAt)
		_, err = s.SetScheduleStatus(ctx, "ten_b", "sch_1", store.ScheduleActive, nil, at(time.Hour))
		requireCode(t, err, errs.ErrNotFound)
		requireCode(t, s.DeleteSchedule(ctx, "ten_b", "sch_1"), errs.ErrNotFound)
		require.NoError(t, s.DeleteSchedule(ctx, "ten_a", "sch_1"))
		_, err = s.GetSchedule(ctx, "ten_a", "sch_1")
		requireCode(t, err, errs.ErrNotFound)
	})

	t.Run("DueAndAdvanceOnce", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		require.NoError(t, s.CreateSchedule(ctx, newSchedule("ten_a", "sch_due", at(time.Second))))
		require.NoError(t, s.CreateSchedule(ctx, newSchedule("ten_b", "sch_later", at(time.Hour))))
		p := newSchedule("ten_a", "sch_paused", at(0))
		p.Status = store.SchedulePaused
		require.NoError(t, s.CreateSchedule(ctx, p))
		due, err := s.DueSchedules(ctx, at(time.Minute), 0)
		require.NoError(t, err)
		require.Len(t, due, 1)
		require.Equal(t, "sch_due", due[0].ScheduleID)

		// Two replicas advance the same tick: one wins.
		var wins int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := s.AdvanceSchedule(ctx, store.AdvanceScheduleParams{TenantID: "ten_a", ScheduleID: "sch_due",
					FromNextRunAt: at(time.Second), NextRunAt: at(2 * time.Second), LastTickAt: ptr(at(time.Second)),
					LastRunID: "run_" + string(rune('a'+i)), UpdatedAt: at(time.Minute)})
				require.NoError(t, err)
				if ok {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 1, wins)
		got, err := s.GetSchedule(ctx, "ten_a", "sch_due")
		require.NoError(t, err)
		require.True(t, at(2*time.Second).Equal(*got.NextRunAt))
		require.True(t, at(time.Second).Equal(*got.LastTickAt))
		require.NotEmpty(t, got.LastRunID)
		ok, err := s.AdvanceSchedule(ctx, store.AdvanceScheduleParams{TenantID: "ten_a", ScheduleID: "sch_paused",
			FromNextRunAt: at(0), NextRunAt: at(time.Second), UpdatedAt: at(time.Minute)})
		require.NoError(t, err)
		require.False(t, ok, "a paused schedule does not advance")
	})
}
