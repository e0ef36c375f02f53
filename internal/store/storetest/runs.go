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

func testRuns(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("CreateGet", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := newRun("ten_a", "agt_1", at(0))
		res, err := s.CreateRun(ctx, store.CreateRunParams{Run: r, FirstEvent: firstEvent(), Priority: 2})
		require.NoError(t, err)
		require.False(t, res.Replayed)
		require.Equal(t, r, res.Run)
		got, err := s.GetRun(ctx, "ten_a", r.RunID)
		require.NoError(t, err)
		require.Equal(t, r, got)

		evs, err := s.ListEvents(ctx, store.ListEventsParams{TenantID: "ten_a", RunID: r.RunID})
		require.NoError(t, err)
		require.Len(t, evs, 1)
		e := evs[0]
		require.EqualValues(t, 1, e.Sequence)
		require.Equal(t, store.EventRunCreated, e.Type)
		require.NotEmpty(t, e.EventID)
		require.False(t, e.Time.IsZero())
		require.Equal(t, "ten_a", e.TenantID)
		require.Equal(t, "agt_1", e.AgentID)
		require.Equal(t, r.RunID, e.RunID)
		require.Nil(t, e.StepID)
		require.Equal(t, firstEvent().Trace, e.Trace)
		require.JSONEq(t, `{"status":"queued"}`, string(e.Payload))
	})

	t.Run("CreateDefaults", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := newRun("ten_a", "agt_1", time.Time{})
		r.RunID, r.Status, r.Context = "", "", nil
		res, err := s.CreateRun(ctx, store.CreateRunParams{Run: r})
		require.NoError(t, err)
		require.NotEmpty(t, res.Run.RunID)
		require.Equal(t, store.RunQueued, res.Run.Status)
		require.False(t, res.Run.CreatedAt.IsZero())
		got, err := s.GetRun(ctx, "ten_a", res.Run.RunID)
		require.NoError(t, err)
		require.Equal(t, res.Run, got)
		evs, err := s.ListEvents(ctx, store.ListEventsParams{TenantID: "ten_a", RunID: got.RunID})
		require.NoError(t, err)
		require.Len(t, evs, 1)
		require.Equal(t, store.EventRunCreated, evs[0].Type)
	})

	t.Run("InvalidInputChangesNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := newRun("", "agt_1", at(0))
		_, err := s.CreateRun(ctx, store.CreateRunParams{Run: r})
		requireCode(t, err, errs.ErrInvalid)
		r = newRun("ten_a", "", at(0))
		_, err = s.CreateRun(ctx, store.CreateRunParams{Run: r})
		requireCode(t, err, errs.ErrInvalid)
		runs, _, err := s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_a"})
		require.NoError(t, err)
		require.Empty(t, runs)
	})

	t.Run("DuplicateRunIDIsConflict", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		_, err := s.CreateRun(ctx, store.CreateRunParams{Run: r})
		requireCode(t, err, errs.ErrConflict)
	})

	t.Run("WrongTenantFindsNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		_, err := s.GetRun(ctx, "ten_b", r.RunID)
		requireCode(t, err, errs.ErrNotFound)
		_, err = s.ListEvents(ctx, store.ListEventsParams{TenantID: "ten_b", RunID: r.RunID})
		requireCode(t, err, errs.ErrNotFound)
		steps, err := s.ListSteps(ctx, "ten_b", r.RunID)
		require.NoError(t, err)
		require.Empty(t, steps)
		runs, next, err := s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_b"})
		require.NoError(t, err)
		require.Empty(t, runs)
		require.Empty(t, next)
		_, err = s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_b", RunID: r.RunID,
			Events: []store.Event{event("x", 1)}})
		requireCode(t, err, errs.ErrNotFound)
		got, err := s.GetRun(ctx, "ten_a", r.RunID)
		require.NoError(t, err)
		require.Equal(t, r, got)
	})

	t.Run("ListPaginationAndFilters", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var all []store.Run
		for i := range 7 {
			agent := "agt_1"
			if i%2 == 1 {
				agent = "agt_2"
			}
			all = append(all, createRun(t, s, newRun("ten_a", agent, at(time.Duration(i)*time.Second))))
		}
		createRun(t, s, newRun("ten_b", "agt_1", at(time.Hour)))
		// Newest first.
		want := make([]string, 0, len(all))
		for i := len(all) - 1; i >= 0; i-- {
			want = append(want, all[i].RunID)
		}
		var got []string
		cursor, pages := "", 0
		for {
			runs, next, err := s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_a", Limit: 3, Cursor: cursor})
			require.NoError(t, err)
			pages++
			require.LessOrEqual(t, len(runs), 3)
			for _, r := range runs {
				require.Equal(t, "ten_a", r.TenantID)
				got = append(got, r.RunID)
			}
			if next == "" {
				break
			}
			cursor = next
			require.Less(t, pages, 10)
		}
		require.Equal(t, want, got)
		require.Equal(t, 3, pages)

		runs, next, err := s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_a", AgentID: "agt_2"})
		require.NoError(t, err)
		require.Empty(t, next)
		require.Len(t, runs, 3)
		for _, r := range runs {
			require.Equal(t, "agt_2", r.AgentID)
		}

		_, err = s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: all[2].RunID,
			FromStatuses: []store.RunStatus{store.RunQueued}, Run: &store.Run{Status: store.RunRunning}})
		require.NoError(t, err)
		runs, _, err = s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_a", Status: string(store.RunRunning)})
		require.NoError(t, err)
		require.Len(t, runs, 1)
		require.Equal(t, all[2].RunID, runs[0].RunID)

		runs, _, err = s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_a"})
		require.NoError(t, err)
		require.Len(t, runs, 7)
	})

}

func testRunChanges(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("CompareAndSet", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		start := store.Run{Status: store.RunRunning, StartedAt: ptr(at(time.Second)), Attempt: 1}
		evs, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID,
			FromStatuses: []store.RunStatus{store.RunQueued}, Run: &start,
			Events: []store.Event{event(store.EventStepStarted, 1)}})
		require.NoError(t, err)
		require.Len(t, evs, 1)
		require.EqualValues(t, 2, evs[0].Sequence)

		// A second start loses the race: nothing of it is applied.
		again := store.Run{Status: store.RunRunning, StartedAt: ptr(at(time.Hour)), Attempt: 7}
		_, err = s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID,
			FromStatuses: []store.RunStatus{store.RunQueued}, Run: &again,
			Steps:  []store.Step{{StepID: "stp_x", Index: 0, Kind: store.StepModel, Status: store.StepStarted, StartedAt: at(0)}},
			Events: []store.Event{event(store.EventStepStarted, 2)}})
		requireCode(t, err, errs.ErrConflict)
		got, err := s.GetRun(ctx, "ten_a", r.RunID)
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, got.Status)
		require.Equal(t, 1, got.Attempt)
		require.Equal(t, at(time.Second), *got.StartedAt)
		evList, err := s.ListEvents(ctx, store.ListEventsParams{TenantID: "ten_a", RunID: r.RunID})
		require.NoError(t, err)
		require.Len(t, evList, 2)
		steps, err := s.ListSteps(ctx, "ten_a", r.RunID)
		require.NoError(t, err)
		require.Empty(t, steps)

		// Any of several statuses matches.
		fin := store.Run{Status: store.RunCompleted, StartedAt: ptr(at(time.Second)), CompletedAt: ptr(at(time.Minute)),
			Summary: store.RunSummary{StepsTotal: 2, ToolCallsTotal: 1, ModelCallsTotal: 2},
			Output:  &store.Output{Type: "text", Text: "done"}, Attempt: 1}
		evs, err = s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID,
			FromStatuses: []store.RunStatus{store.RunQueued, store.RunRunning}, Run: &fin,
			Events: []store.Event{event(store.EventRunCompleted, 3)}})
		require.NoError(t, err)
		require.EqualValues(t, 3, evs[0].Sequence)
		got, err = s.GetRun(ctx, "ten_a", r.RunID)
		require.NoError(t, err)
		want := r
		want.Status, want.StartedAt, want.CompletedAt = fin.Status, fin.StartedAt, fin.CompletedAt
		want.Summary, want.Output, want.Attempt = fin.Summary, fin.Output, fin.Attempt
		require.Equal(t, want, got)

		_, err = s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID,
			FromStatuses: []store.RunStatus{store.RunQueued, store.RunRunning},
			Run:          &store.Run{Status: store.RunCanceled}})
		requireCode(t, err, errs.ErrConflict)
	})

	t.Run("ExpectAttemptFencesStaleWriters", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		start := store.Run{Status: store.RunRunning, StartedAt: ptr(at(time.Second)), Attempt: 2}
		_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID,
			FromStatuses: []store.RunStatus{store.RunQueued}, Run: &start})
		require.NoError(t, err)
		_, err = s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID, ExpectAttempt: 1,
			Events: []store.Event{event(store.EventStepStarted, 1)}})
		requireCode(t, err, errs.ErrConflict)
		evs, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID, ExpectAttempt: 2,
			Events: []store.Event{event(store.EventStepStarted, 1)}})
		require.NoError(t, err)
		require.EqualValues(t, 2, evs[0].Sequence, "the refused change appended nothing")
	})

	t.Run("StatusOnlyKeepsOtherFields", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		start := store.Run{Status: store.RunRunning, StartedAt: ptr(at(time.Second)), Attempt: 1,
			Summary: store.RunSummary{StepsTotal: 3, ModelCallsTotal: 2, ToolCallsTotal: 1}}
		_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID, Run: &start})
		require.NoError(t, err)
		cancel := store.Run{Status: store.RunCanceled, CompletedAt: ptr(at(2 * time.Second))}
		_, err = s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID, StatusOnly: true, Run: &cancel,
			FromStatuses: []store.RunStatus{store.RunRunning}})
		require.NoError(t, err)
		got, err := s.GetRun(ctx, "ten_a", r.RunID)
		require.NoError(t, err)
		require.Equal(t, store.RunCanceled, got.Status)
		require.Equal(t, at(2*time.Second), *got.CompletedAt)
		require.Equal(t, start.Summary, got.Summary)
		require.Equal(t, 1, got.Attempt)
		require.Equal(t, at(time.Second), *got.StartedAt)
	})

	t.Run("FailedRunKeepsError", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		fail := store.Run{Status: store.RunFailed, CompletedAt: ptr(at(time.Minute)),
			Error: &store.ErrorBody{Code: "timeout", Message: "run timed out", Retryable: true,
				Details: map[string]any{"timeout_ms": "1000"}}}
		_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID, Run: &fail})
		require.NoError(t, err)
		got, err := s.GetRun(ctx, "ten_a", r.RunID)
		require.NoError(t, err)
		require.Equal(t, store.RunFailed, got.Status)
		require.Equal(t, fail.Error, got.Error)
		require.Nil(t, got.Output)
	})

	t.Run("UnknownRun", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: "run_missing",
			Run: &store.Run{Status: store.RunRunning}})
		requireCode(t, err, errs.ErrNotFound)
	})

	t.Run("StepsUpsert", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		s1 := store.Step{StepID: "stp_1", Index: 1, Kind: store.StepTool, Name: "tool.echo", Status: store.StepStarted,
			ToolCallID: "call_1", Input: json.RawMessage(`{"text":"hi"}`), StartedAt: at(time.Second)}
		s0 := store.Step{StepID: "stp_0", Index: 0, Kind: store.StepModel, Name: "small", Status: store.StepStarted,
			StartedAt: at(0)}
		_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID, Steps: []store.Step{s1, s0}})
		require.NoError(t, err)
		s1.Status, s1.Output, s1.CompletedAt = store.StepCompleted, json.RawMessage(`{"text":"hi"}`), ptr(at(2*time.Second))
		_, err = s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID, Steps: []store.Step{s1}})
		require.NoError(t, err)
		steps, err := s.ListSteps(ctx, "ten_a", r.RunID)
		require.NoError(t, err)
		s0.TenantID, s0.RunID, s1.TenantID, s1.RunID = "ten_a", r.RunID, "ten_a", r.RunID
		require.Equal(t, []store.Step{s0, s1}, steps)
	})
}

func testEvents(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("GaplessUnderConcurrentAppends", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		const workers, each = 20, 10
		var wg sync.WaitGroup
		errc := make(chan error, workers*each)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID,
						Events: []store.Event{event("test.event", w*each+i)}})
					errc <- err
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			require.NoError(t, err)
		}
		var evs []store.Event
		after := int64(0)
		for {
			page, err := s.ListEvents(ctx, store.ListEventsParams{TenantID: "ten_a", RunID: r.RunID,
				AfterSequence: after, Limit: 37})
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			require.LessOrEqual(t, len(page), 37)
			evs = append(evs, page...)
			after = page[len(page)-1].Sequence
		}
		require.Len(t, evs, workers*each+1)
		seen := map[string]bool{}
		for i, e := range evs {
			require.EqualValues(t, i+1, e.Sequence)
			require.False(t, seen[e.EventID], "duplicate event id %s", e.EventID)
			seen[e.EventID] = true
		}
	})

	t.Run("BatchAndFields", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		step := "stp_1"
		in := []store.Event{
			{EventID: "evt_fixed", Time: at(time.Second), Type: store.EventStepStarted, StepID: &step,
				Trace: store.EventTrace{Traceparent: "tp", SpanID: "sp"}, Payload: json.RawMessage(`{"a":[1,2]}`)},
			{Type: store.EventModelRequested},
		}
		out, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r.RunID, Events: in})
		require.NoError(t, err)
		require.Len(t, out, 2)
		require.EqualValues(t, 2, out[0].Sequence)
		require.EqualValues(t, 3, out[1].Sequence)
		require.Equal(t, "evt_fixed", out[0].EventID)
		require.NotEmpty(t, out[1].EventID)
		require.False(t, out[1].Time.IsZero())
		for _, e := range out {
			require.Equal(t, "ten_a", e.TenantID)
			require.Equal(t, r.RunID, e.RunID)
			require.Equal(t, "agt_1", e.AgentID)
		}
		got, err := s.ListEvents(ctx, store.ListEventsParams{TenantID: "ten_a", RunID: r.RunID, AfterSequence: 1})
		require.NoError(t, err)
		require.Equal(t, out, got)

		got, err = s.ListEvents(ctx, store.ListEventsParams{TenantID: "ten_a", RunID: r.RunID, AfterSequence: 3})
		require.NoError(t, err)
		require.Empty(t, got)
	})

	t.Run("SequencesArePerRun", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		b := createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		for range 3 {
			_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: a.RunID,
				Events: []store.Event{event("x", 0)}})
			require.NoError(t, err)
		}
		out, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: b.RunID,
			Events: []store.Event{event("x", 0)}})
		require.NoError(t, err)
		require.EqualValues(t, 2, out[0].Sequence)
	})
}

func testIdempotency(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	params := func(r store.Run, key, fp string) store.CreateRunParams {
		return store.CreateRunParams{Run: r, FirstEvent: firstEvent(), IdempotencyKey: key, Fingerprint: fp,
			IdempotencyTTL: time.Hour, Priority: 1}
	}

	t.Run("ConcurrentDuplicatesMakeOneRun", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		const n = 20
		results := make([]store.CreateRunResult, n)
		errsOut := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Each request carries its own candidate run id, as a handler would.
				results[i], errsOut[i] = s.CreateRun(ctx, params(newRun("ten_a", "agt_1", at(0)), "key-1", "fp-1"))
			}()
		}
		wg.Wait()
		created, replayed := 0, 0
		var runID string
		for i := range n {
			require.NoError(t, errsOut[i])
			if results[i].Replayed {
				replayed++
			} else {
				created++
			}
			if runID == "" {
				runID = results[i].Run.RunID
			}
			require.Equal(t, runID, results[i].Run.RunID)
		}
		require.Equal(t, 1, created)
		require.Equal(t, n-1, replayed)
		runs, _, err := s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_a"})
		require.NoError(t, err)
		require.Len(t, runs, 1)
		evs, err := s.ListEvents(ctx, store.ListEventsParams{TenantID: "ten_a", RunID: runID})
		require.NoError(t, err)
		require.Len(t, evs, 1)
	})

	t.Run("DifferentBodyConflicts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		first, err := s.CreateRun(ctx, params(newRun("ten_a", "agt_1", at(0)), "key-1", "fp-1"))
		require.NoError(t, err)
		_, err = s.CreateRun(ctx, params(newRun("ten_a", "agt_1", at(0)), "key-1", "fp-2"))
		requireCode(t, err, errs.ErrConflict)
		var e *errs.Error
		require.ErrorAs(t, err, &e)
		require.NotEmpty(t, e.Message)
		again, err := s.CreateRun(ctx, params(newRun("ten_a", "agt_1", at(0)), "key-1", "fp-1"))
		require.NoError(t, err)
		require.True(t, again.Replayed)
		require.Equal(t, first.Run, again.Run)
	})

	t.Run("ReplayOnlyWritesNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		p := params(newRun("ten_a", "agt_1", at(0)), "key-r", "fp-1")
		p.ReplayOnly = true
		_, err := s.CreateRun(ctx, p)
		requireCode(t, err, errs.ErrNotFound)
		runs, _, err := s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_a"})
		require.NoError(t, err)
		require.Empty(t, runs, "a replay-only create of an unknown key creates nothing")

		first, err := s.CreateRun(ctx, params(newRun("ten_a", "agt_1", at(0)), "key-r", "fp-1"))
		require.NoError(t, err)
		again, err := s.CreateRun(ctx, p)
		require.NoError(t, err)
		require.True(t, again.Replayed)
		require.Equal(t, first.Run.RunID, again.Run.RunID)
		other := params(newRun("ten_a", "agt_1", at(0)), "key-r", "fp-2")
		other.ReplayOnly = true
		_, err = s.CreateRun(ctx, other)
		requireCode(t, err, errs.ErrConflict)
	})

	t.Run("KeyIsScoped", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		base := newRun("ten_a", "agt_1", at(0))
		seen := map[string]bool{}
		variants := []store.Run{base, base, base, newRun("ten_b", "agt_1", at(0))}
		variants[1].PrincipalID = "prn_bob"
		variants[2].AgentID = "agt_2"
		for _, r := range variants {
			r.RunID = newRun("", "", at(0)).RunID
			res, err := s.CreateRun(ctx, params(r, "key-1", "fp-1"))
			require.NoError(t, err)
			require.False(t, res.Replayed)
			require.False(t, seen[res.Run.RunID])
			seen[res.Run.RunID] = true
		}
	})

	t.Run("PurgeForgetsExpiredKeys", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		first, err := s.CreateRun(ctx, params(newRun("ten_a", "agt_1", at(0)), "key-1", "fp-1"))
		require.NoError(t, err)
		n, err := s.PurgeIdempotency(ctx, time.Now().Add(-time.Hour))
		require.NoError(t, err)
		require.Zero(t, n)
		again, err := s.CreateRun(ctx, params(newRun("ten_a", "agt_1", at(0)), "key-1", "fp-1"))
		require.NoError(t, err)
		require.True(t, again.Replayed)

		n, err = s.PurgeIdempotency(ctx, time.Now().Add(2*time.Hour))
		require.NoError(t, err)
		require.Equal(t, 1, n)
		fresh, err := s.CreateRun(ctx, params(newRun("ten_a", "agt_1", at(0)), "key-1", "fp-2"))
		require.NoError(t, err)
		require.False(t, fresh.Replayed)
		require.NotEqual(t, first.Run.RunID, fresh.Run.RunID)
	})

	t.Run("AuditInSameTransaction", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		r := newRun("ten_a", "agt_1", at(0))
		p := params(r, "key-1", "fp-1")
		p.Audit = &store.AuditRecord{TenantID: "ten_a", PrincipalID: r.PrincipalID, Action: "run.create",
			Target: r.RunID, Outcome: "allowed"}
		_, err := s.CreateRun(ctx, p)
		require.NoError(t, err)
		_, err = s.CreateRun(ctx, p) // replay: no second audit record
		require.NoError(t, err)
		p.Fingerprint = "fp-2" // conflict: no audit record either
		_, err = s.CreateRun(ctx, p)
		requireCode(t, err, errs.ErrConflict)
		recs, err := s.ListAudit(ctx, store.ListAuditParams{TenantID: "ten_a"})
		require.NoError(t, err)
		require.Len(t, recs, 1)
		require.Equal(t, "run.create", recs[0].Action)
		require.Equal(t, r.RunID, recs[0].Target)
	})
}
