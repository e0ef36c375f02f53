package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

func newThread(tenantID string, meta map[string]string, n int) store.Thread {
	return store.Thread{TenantID: tenantID, ThreadID: ids.New("thr_"), Metadata: meta,
		CreatedAt: at(secs(n)), UpdatedAt: at(secs(n))}
}

// threadRun is a queued run of agt_1 on thread with strategy.
func threadRun(tenantID, threadID, strategy, text string) store.Run {
	r := newRun(tenantID, "agt_1", at(0))
	r.ThreadID, r.MultitaskStrategy, r.Input.Text = threadID, strategy, text
	return r
}

// startAndFinish runs r as an executor would: running, one model step
// that answers answer, then terminal status.
func startAndFinish(t *testing.T, s store.Store, r store.Run, answer string, status store.RunStatus) {
	t.Helper()
	ctx := context.Background()
	start(t, s, r)
	out, _ := json.Marshal(map[string]any{"message": map[string]any{"role": "assistant", "content": answer}})
	r.Status, r.StartedAt, r.CompletedAt, r.Attempt = status, ptr(at(secs(1))), ptr(at(secs(2))), 1
	r.Output = &store.Output{Type: "text", Text: answer}
	_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: r.TenantID, RunID: r.RunID,
		FromStatuses: []store.RunStatus{store.RunRunning}, Run: &r,
		Steps: []store.Step{{StepID: ids.New("stp_"), Index: 0, Kind: store.StepModel, Name: "m", Status: store.StepCompleted,
			Output: out, StartedAt: at(secs(1)), CompletedAt: ptr(at(secs(2)))}},
		Events: []store.Event{event(store.EventRunCompleted, 1)}})
	require.NoError(t, err)
}

// start moves r to running, as an executor's first flush does.
func start(t *testing.T, s store.Store, r store.Run) {
	t.Helper()
	r.Status, r.StartedAt, r.Attempt = store.RunRunning, ptr(at(secs(1))), 1
	_, err := s.ApplyRunChange(context.Background(), store.RunChange{TenantID: r.TenantID, RunID: r.RunID,
		FromStatuses: []store.RunStatus{store.RunQueued}, Run: &r})
	require.NoError(t, err)
}

func messages(t *testing.T, s store.Store, tenantID, threadID string) []string {
	t.Helper()
	ms, err := s.ListThreadMessages(context.Background(), store.ListThreadMessagesParams{TenantID: tenantID, ThreadID: threadID})
	require.NoError(t, err)
	var out []string
	for i, m := range ms {
		require.EqualValues(t, i+1, m.Seq)
		require.NotEmpty(t, m.MessageID)
		out = append(out, m.Role+":"+m.Content)
	}
	return out
}

func activeRun(t *testing.T, s store.Store, tenantID, threadID string) string {
	t.Helper()
	th, err := s.GetThread(context.Background(), tenantID, threadID)
	require.NoError(t, err)
	return th.ActiveRunID
}

func testThreads(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("CreateGetListDelete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := newThread("ten_a", map[string]string{"user": "u1", "topic": "x"}, 0)
		b := newThread("ten_a", map[string]string{"user": "u2"}, 1)
		c := newThread("ten_a", nil, 2)
		for _, th := range []store.Thread{a, b, c} {
			require.NoError(t, s.CreateThread(ctx, th))
		}
		requireCode(t, s.CreateThread(ctx, a), errs.ErrConflict)
		requireCode(t, s.CreateThread(ctx, store.Thread{TenantID: "ten_a", ThreadID: "thr_x", Metadata: map[string]string{"bad key": "v"}}), errs.ErrInvalid)
		got, err := s.GetThread(ctx, "ten_a", a.ThreadID)
		require.NoError(t, err)
		require.Equal(t, a, got)
		got, err = s.GetThread(ctx, "ten_a", c.ThreadID)
		require.NoError(t, err)
		require.Equal(t, map[string]string{}, got.Metadata)
		_, err = s.GetThread(ctx, "ten_b", a.ThreadID)
		requireCode(t, err, errs.ErrNotFound)

		list, next, err := s.ListThreads(ctx, store.ListThreadsParams{TenantID: "ten_a", Limit: 2})
		require.NoError(t, err)
		require.Equal(t, []string{c.ThreadID, b.ThreadID}, threadIDs(list))
		require.Equal(t, b.ThreadID, next)
		list, next, err = s.ListThreads(ctx, store.ListThreadsParams{TenantID: "ten_a", Limit: 2, Cursor: next})
		require.NoError(t, err)
		require.Equal(t, []string{a.ThreadID}, threadIDs(list))
		require.Empty(t, next)
		list, _, err = s.ListThreads(ctx, store.ListThreadsParams{TenantID: "ten_a", Metadata: map[string]string{"user": "u1"}})
		require.NoError(t, err)
		require.Equal(t, []string{a.ThreadID}, threadIDs(list))
		list, _, err = s.ListThreads(ctx, store.ListThreadsParams{TenantID: "ten_a", Metadata: map[string]string{"user": "u1", "topic": "y"}})
		require.NoError(t, err)
		require.Empty(t, list)
		list, _, err = s.ListThreads(ctx, store.ListThreadsParams{TenantID: "ten_b"})
		require.NoError(t, err)
		require.Empty(t, list)
		_, _, err = s.ListThreads(ctx, store.ListThreadsParams{TenantID: "ten_a", Cursor: "thr_nope"})
		requireCode(t, err, errs.ErrInvalid)

		requireCode(t, s.DeleteThread(ctx, store.DeleteThreadParams{TenantID: "ten_b", ThreadID: a.ThreadID}), errs.ErrNotFound)
		require.NoError(t, s.DeleteThread(ctx, store.DeleteThreadParams{TenantID: "ten_a", ThreadID: a.ThreadID,
			Audit: &store.AuditRecord{TenantID: "ten_a", PrincipalID: "prn_alice", Action: "thread.delete", Target: "thread/" + a.ThreadID, Outcome: "deleted"}}))
		_, err = s.GetThread(ctx, "ten_a", a.ThreadID)
		requireCode(t, err, errs.ErrNotFound)
		_, err = s.ListThreadMessages(ctx, store.ListThreadMessagesParams{TenantID: "ten_a", ThreadID: a.ThreadID})
		requireCode(t, err, errs.ErrNotFound)
		recs, err := s.ListAudit(ctx, store.ListAuditParams{TenantID: "ten_a"})
		require.NoError(t, err)
		require.Len(t, recs, 1)
		require.Equal(t, "thread.delete", recs[0].Action)
	})

	t.Run("TurnsAppendInOrder", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		th := newThread("ten_a", nil, 0)
		require.NoError(t, s.CreateThread(ctx, th))
		r1 := createRun(t, s, threadRun("ten_a", th.ThreadID, store.MultitaskReject, "one"))
		require.Equal(t, th.ThreadID, r1.ThreadID)
		require.Equal(t, r1.RunID, activeRun(t, s, "ten_a", th.ThreadID))
		got, err := s.GetRun(ctx, "ten_a", r1.RunID)
		require.NoError(t, err)
		require.Equal(t, store.MultitaskReject, got.MultitaskStrategy)
		// Not yet ended: nothing appended, and the thread cannot be deleted.
		require.Empty(t, messages(t, s, "ten_a", th.ThreadID))
		requireCode(t, s.DeleteThread(ctx, store.DeleteThreadParams{TenantID: "ten_a", ThreadID: th.ThreadID}), errs.ErrConflict)
		startAndFinish(t, s, r1, "answer one", store.RunCompleted)
		require.Empty(t, activeRun(t, s, "ten_a", th.ThreadID))
		r2 := createRun(t, s, threadRun("ten_a", th.ThreadID, store.MultitaskReject, "two"))
		startAndFinish(t, s, r2, "answer two", store.RunFailed)
		require.Equal(t, []string{"user:one", "assistant:answer one", "user:two", "assistant:answer two"},
			messages(t, s, "ten_a", th.ThreadID))
		last, err := s.ListThreadMessages(ctx, store.ListThreadMessagesParams{TenantID: "ten_a", ThreadID: th.ThreadID, Last: 3})
		require.NoError(t, err)
		require.Len(t, last, 3)
		require.EqualValues(t, 2, last[0].Seq)
		page, err := s.ListThreadMessages(ctx, store.ListThreadMessagesParams{TenantID: "ten_a", ThreadID: th.ThreadID, AfterSeq: 1, Limit: 2})
		require.NoError(t, err)
		require.Len(t, page, 2)
		require.EqualValues(t, 2, page[0].Seq)
		require.Equal(t, r1.RunID, page[0].RunID)
		_, err = s.ListThreadMessages(ctx, store.ListThreadMessagesParams{TenantID: "ten_b", ThreadID: th.ThreadID})
		requireCode(t, err, errs.ErrNotFound)
		// A run on another tenant's thread finds no thread.
		_, err = s.CreateRun(ctx, store.CreateRunParams{Run: threadRun("ten_b", th.ThreadID, store.MultitaskReject, "x"), FirstEvent: firstEvent()})
		requireCode(t, err, errs.ErrNotFound)
	})

	t.Run("ListRunsByThread", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a, b := newThread("ten_a", nil, 1), newThread("ten_a", nil, 2)
		require.NoError(t, s.CreateThread(ctx, a))
		require.NoError(t, s.CreateThread(ctx, b))
		var onA []string
		for i := range 3 {
			r := threadRun("ten_a", a.ThreadID, store.MultitaskEnqueue, "a")
			r.CreatedAt = at(secs(i))
			onA = append([]string{createRun(t, s, r).RunID}, onA...) // newest first
		}
		createRun(t, s, threadRun("ten_a", b.ThreadID, store.MultitaskEnqueue, "b"))
		createRun(t, s, newRun("ten_a", "agt_1", at(0)))
		runs, next, err := s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_a", ThreadID: a.ThreadID, Limit: 2})
		require.NoError(t, err)
		require.Equal(t, onA[:2], []string{runs[0].RunID, runs[1].RunID})
		runs, next, err = s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_a", ThreadID: a.ThreadID, Cursor: next})
		require.NoError(t, err)
		require.Empty(t, next)
		require.Len(t, runs, 1)
		require.Equal(t, onA[2], runs[0].RunID)
		require.Equal(t, a.ThreadID, runs[0].ThreadID)
		// Another tenant's filter on the same thread id finds nothing.
		runs, _, err = s.ListRuns(ctx, store.ListRunsParams{TenantID: "ten_b", ThreadID: a.ThreadID})
		require.NoError(t, err)
		require.Empty(t, runs)
	})

	t.Run("Reject", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		th := newThread("ten_a", nil, 0)
		require.NoError(t, s.CreateThread(ctx, th))
		r1 := createRun(t, s, threadRun("ten_a", th.ThreadID, store.MultitaskReject, "one"))
		r2 := threadRun("ten_a", th.ThreadID, store.MultitaskReject, "two")
		_, err := s.CreateRun(ctx, store.CreateRunParams{Run: r2, FirstEvent: firstEvent()})
		requireCode(t, err, errs.ErrConflict)
		require.True(t, errors.Is(err, store.ErrThreadBusy))
		_, err = s.GetRun(ctx, "ten_a", r2.RunID)
		requireCode(t, err, errs.ErrNotFound)
		_, err = s.CreateRun(ctx, store.CreateRunParams{Run: threadRun("ten_a", th.ThreadID, "bogus", "x"), FirstEvent: firstEvent()})
		requireCode(t, err, errs.ErrInvalid)
		require.Equal(t, r1.RunID, activeRun(t, s, "ten_a", th.ThreadID))
	})

	t.Run("EnqueueStartsAfter", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		th := newThread("ten_a", nil, 0)
		require.NoError(t, s.CreateThread(ctx, th))
		r1 := createRun(t, s, threadRun("ten_a", th.ThreadID, store.MultitaskReject, "one"))
		r2 := createRun(t, s, threadRun("ten_a", th.ThreadID, store.MultitaskEnqueue, "two"))
		r3 := createRun(t, s, threadRun("ten_a", th.ThreadID, store.MultitaskEnqueue, "three"))
		require.Equal(t, r1.RunID, activeRun(t, s, "ten_a", th.ThreadID))
		// A waiting run that is canceled gives up its place.
		r3.Status, r3.CompletedAt = store.RunCanceled, ptr(at(secs(3)))
		_, err := s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r3.RunID, StatusOnly: true, Run: &r3,
			FromStatuses: []store.RunStatus{store.RunQueued}})
		require.NoError(t, err)
		requireCode(t, s.DeleteThread(ctx, store.DeleteThreadParams{TenantID: "ten_a", ThreadID: th.ThreadID}), errs.ErrConflict)
		startAndFinish(t, s, r1, "a1", store.RunCompleted)
		require.Equal(t, r2.RunID, activeRun(t, s, "ten_a", th.ThreadID))
		startAndFinish(t, s, r2, "a2", store.RunCompleted)
		require.Empty(t, activeRun(t, s, "ten_a", th.ThreadID))
		require.Equal(t, []string{"user:one", "assistant:a1", "user:two", "assistant:a2"}, messages(t, s, "ten_a", th.ThreadID))
		require.NoError(t, s.DeleteThread(ctx, store.DeleteThreadParams{TenantID: "ten_a", ThreadID: th.ThreadID}))
	})

	for _, strategy := range []string{store.MultitaskInterrupt, store.MultitaskRollback} {
		t.Run("Cancels/"+strategy, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			th := newThread("ten_a", nil, 0)
			require.NoError(t, s.CreateThread(ctx, th))
			r1 := createRun(t, s, threadRun("ten_a", th.ThreadID, store.MultitaskReject, "one"))
			start(t, s, r1)
			res, err := s.CreateRun(ctx, store.CreateRunParams{Run: threadRun("ten_a", th.ThreadID, strategy, "two"), FirstEvent: firstEvent(),
				InterruptEvent: store.Event{Type: store.EventRunCanceled, Payload: json.RawMessage(`{"status":"canceled","reason":"interrupted"}`)}})
			require.NoError(t, err)
			require.NotNil(t, res.Interrupted)
			require.Equal(t, r1.RunID, res.Interrupted.RunID)
			require.EqualValues(t, 2, res.Interrupted.Sequence)
			got, err := s.GetRun(ctx, "ten_a", r1.RunID)
			require.NoError(t, err)
			require.Equal(t, store.RunCanceled, got.Status)
			evs, err := s.ListEvents(ctx, store.ListEventsParams{TenantID: "ten_a", RunID: r1.RunID})
			require.NoError(t, err)
			require.Equal(t, store.EventRunCanceled, evs[len(evs)-1].Type)
			require.Equal(t, res.Run.RunID, activeRun(t, s, "ten_a", th.ThreadID))
			// The interrupted executor's late write is refused.
			r1.Status = store.RunCompleted
			_, err = s.ApplyRunChange(ctx, store.RunChange{TenantID: "ten_a", RunID: r1.RunID, Run: &r1, FromStatuses: []store.RunStatus{store.RunRunning}})
			requireCode(t, err, errs.ErrConflict)
			want := []string{"user:one"}
			if strategy == store.MultitaskRollback {
				want = nil
			}
			require.Equal(t, want, messages(t, s, "ten_a", th.ThreadID))
		})
	}

	t.Run("ConcurrentRejectAdmitsOne", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		th := newThread("ten_a", nil, 0)
		require.NoError(t, s.CreateThread(ctx, th))
		var wg sync.WaitGroup
		var mu sync.Mutex
		var admitted, busy int
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.CreateRun(ctx, store.CreateRunParams{Run: threadRun("ten_a", th.ThreadID, store.MultitaskReject, "x"), FirstEvent: firstEvent()})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					admitted++
				case errors.Is(err, store.ErrThreadBusy):
					busy++
				default:
					t.Errorf("create: %v", err)
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 1, admitted)
		require.Equal(t, 9, busy)
	})
}

func threadIDs(ts []store.Thread) []string {
	var out []string
	for _, th := range ts {
		out = append(out, th.ThreadID)
	}
	return out
}

func secs(n int) time.Duration { return time.Duration(n) * time.Second }
