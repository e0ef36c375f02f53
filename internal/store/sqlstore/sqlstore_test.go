package sqlstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

var now = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("x", 3600))

func clock() time.Time { return now }

func TestLimit(t *testing.T) {
	t.Parallel()
	require.Equal(t, 50, sqlstore.Limit(0, 50, 1000))
	require.Equal(t, 50, sqlstore.Limit(-3, 50, 1000))
	require.Equal(t, 7, sqlstore.Limit(7, 50, 1000))
	require.Equal(t, 1000, sqlstore.Limit(5000, 50, 1000))
}

func TestPrepareRunDefaults(t *testing.T) {
	t.Parallel()
	n, err := sqlstore.PrepareRun(store.CreateRunParams{
		Run:            store.Run{TenantID: "t", AgentID: "a", Context: json.RawMessage{}},
		IdempotencyKey: "k",
	}, clock)
	require.NoError(t, err)
	require.Equal(t, store.RunQueued, n.Run.Status)
	require.NotEmpty(t, n.Run.RunID)
	require.Equal(t, "k", n.Run.IdempotencyKey)
	require.Nil(t, n.Run.Context)
	want := now.UTC().Truncate(time.Microsecond)
	require.Equal(t, want, n.Now)
	require.Equal(t, want, n.Run.CreatedAt)
	require.Equal(t, sqlstore.DefaultIdempotencyTTL, n.TTL)
	ev := n.FirstEvent
	require.Equal(t, int64(1), ev.Sequence)
	require.Equal(t, store.EventRunCreated, ev.Type)
	require.Equal(t, []string{"t", "a", n.Run.RunID}, []string{ev.TenantID, ev.AgentID, ev.RunID})
	require.NotEmpty(t, ev.EventID)
	require.Equal(t, want, ev.Time)

	_, err = sqlstore.PrepareRun(store.CreateRunParams{Run: store.Run{TenantID: "t"}}, clock)
	require.True(t, errors.Is(err, errs.ErrInvalid))
}

func TestCheckRunChange(t *testing.T) {
	t.Parallel()
	c := store.RunChange{RunID: "r1", ExpectAttempt: 2}
	err := sqlstore.CheckRunChange(c, "running", 3)
	var e *errs.Error
	require.True(t, errors.As(err, &e))
	require.Equal(t, errs.Conflict, e.Code)
	require.Equal(t, 3, e.Details["attempt"])

	c = store.RunChange{RunID: "r1", FromStatuses: []store.RunStatus{store.RunQueued, store.RunRunning}}
	err = sqlstore.CheckRunChange(c, "completed", 1)
	require.True(t, errors.As(err, &e))
	require.Equal(t, "run r1 is completed, not queued or running", e.Message)
	require.Equal(t, "completed", e.Details["status"])
	require.NoError(t, sqlstore.CheckRunChange(c, "running", 1))
}

func TestSequenceEvents(t *testing.T) {
	t.Parallel()
	c := store.RunChange{TenantID: "t", RunID: "r", Events: []store.Event{{Type: "x"}, {Type: "y", AgentID: "other"}}}
	evs := sqlstore.SequenceEvents(c, "a", 4, now.UTC())
	require.Len(t, evs, 2)
	require.Equal(t, []int64{5, 6}, []int64{evs[0].Sequence, evs[1].Sequence})
	require.Equal(t, "a", evs[0].AgentID)
	require.Equal(t, "other", evs[1].AgentID)
	require.NotNil(t, sqlstore.SequenceEvents(store.RunChange{}, "a", 0, now))
}

func TestCheckBudget(t *testing.T) {
	t.Parallel()
	p := store.ReserveParams{Window: "hour", MaxTokens: 100, Tokens: 10, MaxCostUSD: 1, CostUSD: 0.5}
	require.NoError(t, sqlstore.CheckBudget(p, store.BudgetUsage{UsedTokens: 90, UsedCostUSD: 0.5}))
	err := sqlstore.CheckBudget(p, store.BudgetUsage{UsedTokens: 91})
	require.True(t, errors.Is(err, errs.ErrQuotaExceeded))
	require.Equal(t, "tokens", errs.As(err).Details["resource"])
	err = sqlstore.CheckBudget(p, store.BudgetUsage{UsedCostUSD: 0.6})
	require.Equal(t, "cost_usd", errs.As(err).Details["resource"])
}

func TestRunColumnsRoundTrip(t *testing.T) {
	t.Parallel()
	r := store.Run{Input: store.RunInput{Type: "text", Text: "hi"}, Summary: store.RunSummary{StepsTotal: 2},
		Output: &store.Output{Type: "text", Text: "ok"}}
	c, err := sqlstore.EncodeRun(r)
	require.NoError(t, err)
	require.Nil(t, c.Error)
	var back store.Run
	out, _ := c.Output.(string)
	require.NoError(t, sqlstore.DecodeRun(&back, []byte(c.Input), []byte(c.Tooling), []byte(c.RunOptions),
		[]byte(c.Summary), []byte(out), nil))
	require.Equal(t, r.Input, back.Input)
	require.Equal(t, r.Summary, back.Summary)
	require.Equal(t, r.Output, back.Output)
	require.Nil(t, back.Error)

	r.Error = &store.ErrorBody{Details: map[string]any{"x": math.NaN()}}
	_, err = sqlstore.EncodeRun(r)
	require.Equal(t, "error", errs.As(err).Details["field"])
	require.Error(t, sqlstore.FromJSON([]byte("{"), &back))
}

func TestAuditAndIngested(t *testing.T) {
	t.Parallel()
	row, err := sqlstore.PrepareAudit(store.AuditRecord{Details: map[string]any{"n": 1}}, clock)
	require.NoError(t, err)
	require.NotEmpty(t, row.Record.AuditID)
	require.NoError(t, row.Chain(4, "prev"))
	r := row.Record
	require.Equal(t, int64(5), r.Seq)
	require.Equal(t, "prev", r.PrevHash)
	require.Equal(t, store.HashCanonical(row.Canonical), r.Hash)
	require.Contains(t, string(row.Canonical), `"details":{"n":1}`)
	require.Contains(t, string(row.Canonical), `"prev_hash":"prev","principal_id":"","seq":5`)
	require.NotContains(t, string(row.Canonical), `"hash"`)

	// Read back: the record comes from the canonical bytes, the columns win
	// for the fields they hold.
	read := store.AuditRecord{AuditID: r.AuditID, Seq: 5, Time: r.Time, PrevHash: "prev", Hash: r.Hash, TenantID: "moved"}
	require.NoError(t, sqlstore.DecodeAudit(&read, row.Canonical, nil, nil))
	require.Equal(t, "moved", read.TenantID)
	require.Equal(t, "1", string(read.Details["n"].(json.Number)))
	require.Equal(t, row.Canonical, read.Stored.Canonical)

	_, err = sqlstore.PrepareAudit(store.AuditRecord{Details: map[string]any{"x": math.NaN()}}, clock)
	require.Equal(t, "details", errs.As(err).Details["field"])
	bad, err := sqlstore.PrepareAudit(store.AuditRecord{Details: map[string]any{"x": json.Number("1e400")}}, clock)
	require.NoError(t, err)
	require.Equal(t, errs.InvalidRequest, errs.CodeOf(bad.Chain(0, "")))

	in, err := sqlstore.EncodeIngested(store.IngestedEvent{Event: store.Event{TenantID: "t", EventID: "e", RunID: "r"}}, clock)
	require.NoError(t, err)
	require.Equal(t, now.UTC().Truncate(time.Microsecond), in.At)
	back, err := sqlstore.DecodeIngested([]byte(in.Body))
	require.NoError(t, err)
	require.Nil(t, back.Payload)
	require.Equal(t, "e", back.EventID)
	_, err = sqlstore.EncodeIngested(store.IngestedEvent{}, clock)
	require.True(t, errors.Is(err, errs.ErrInvalid))
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"m/0002_b.sql": {Data: []byte("B")},
		"m/0001_a.sql": {Data: []byte("A")},
	}
	migs, err := sqlstore.Migrations(fsys, "m")
	require.NoError(t, err)
	require.Equal(t, []sqlstore.Migration{{Version: 1, Name: "0001_a.sql", SQL: "A"}, {Version: 2, Name: "0002_b.sql", SQL: "B"}}, migs)
	fsys["m/readme.txt"] = &fstest.MapFile{}
	_, err = sqlstore.Migrations(fsys, "m")
	require.Error(t, err)
}

func TestPrepareRunChangeAndPage(t *testing.T) {
	t.Parallel()
	cols, err := sqlstore.PrepareRunChange(store.RunChange{TenantID: "t", RunID: "r"})
	require.NoError(t, err)
	require.Nil(t, cols)
	cols, err = sqlstore.PrepareRunChange(store.RunChange{TenantID: "t", RunID: "r",
		Run: &store.Run{Status: store.RunFailed, Error: &store.ErrorBody{Code: "timeout"}}})
	require.NoError(t, err)
	require.Nil(t, cols.Output)
	require.JSONEq(t, `{"code":"timeout","message":"","retryable":false}`, cols.Error.(string))
	require.Equal(t, "failed", cols.Status)
	require.False(t, cols.StatusOnly)
	done := time.Date(2025, 1, 2, 3, 4, 5, 6789, time.FixedZone("y", -7200))
	cols, err = sqlstore.PrepareRunChange(store.RunChange{TenantID: "t", RunID: "r", StatusOnly: true,
		Run: &store.Run{Status: store.RunCanceled, CompletedAt: &done, Attempt: 2}})
	require.NoError(t, err)
	require.True(t, cols.StatusOnly)
	require.Equal(t, 2, cols.Attempt)
	require.Equal(t, sqlstore.UTC(done), *cols.CompletedAt, "times are stored UTC, microseconds")
	require.Nil(t, cols.StartedAt)
	_, err = sqlstore.PrepareRunChange(store.RunChange{TenantID: "t"})
	require.Equal(t, "run_id", errs.As(err).Details["field"])

	runs := []store.Run{{RunID: "a"}, {RunID: "b"}, {RunID: "c"}}
	page, next := sqlstore.Page(runs, 2)
	require.Len(t, page, 2)
	require.Equal(t, "b", next)
	page, next = sqlstore.Page(runs, 3)
	require.Len(t, page, 3)
	require.Empty(t, next)
}

// MapError maps what every driver shares and leaves the rest to the
// adapter's own mapping.
func TestMapError(t *testing.T) {
	t.Parallel()
	noRows := errors.New("no rows")
	native := func(err error, what string) error { return errs.Wrap(errs.Conflict, err, "native %s", what) }
	mapErr := func(err error) error { return sqlstore.MapError(err, "thing", noRows, native) }
	require.NoError(t, mapErr(nil))
	mapped := errs.E(errs.QuotaExceeded, "over")
	require.Same(t, mapped, mapErr(mapped), "an errs error passes unchanged")
	require.Equal(t, errs.NotFound, errs.CodeOf(mapErr(fmt.Errorf("scan: %w", noRows))))
	require.Equal(t, "thing not found", errs.As(mapErr(noRows)).Message)
	require.Equal(t, errs.Timeout, errs.CodeOf(mapErr(context.DeadlineExceeded)))
	err := mapErr(errors.New("driver says no"))
	require.Equal(t, errs.Conflict, errs.CodeOf(err))
	require.Equal(t, "native thing", errs.As(err).Message)
}
