package agentorchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // schedules name IANA time zones; the binary must not depend on the host's zoneinfo

	"github.com/robfig/cron/v3"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// Schedule limits.
const (
	minEvery        = time.Second
	maxCatchUp      = 100
	maxFirePerPoll  = 100    // ticks one schedule fires in one pass at most
	maxTickScan     = 100000 // ticks walked to find where a long-missed schedule resumes
	dueSchedulesMax = 100
)

// cronSeconds parses 6-field expressions (seconds first); 5-field ones
// use cron.ParseStandard. Both accept descriptors such as @hourly.
var cronSeconds = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// tickSpec yields a schedule's ticks.
type tickSpec interface {
	// Next returns the first tick strictly after t.
	Next(t time.Time) time.Time
}

// everySpec ticks every d.
type everySpec struct{ d time.Duration }

func (e everySpec) Next(t time.Time) time.Time { return t.Add(e.d) }

// parseSpec parses a schedule's cron or every in its time zone. Errors
// are invalid_request naming the field.
func parseSpec(cronExpr, every, timezone string) (tickSpec, error) {
	loc, err := time.LoadLocation(timezone)
	if err != nil || timezone == "" || strings.EqualFold(timezone, "Local") {
		return nil, errs.Field("timezone", "must be an IANA time zone such as UTC or Europe/Paris, got %q", timezone)
	}
	switch {
	case cronExpr != "" && every != "":
		return nil, errs.Field("cron", "send either cron or every, not both")
	case every != "":
		d, err := time.ParseDuration(every)
		if err != nil || d < minEvery {
			return nil, errs.Field("every", "must be a duration of at least 1s such as 30s or 1h, got %q", every)
		}
		return everySpec{d}, nil
	case cronExpr != "":
		if strings.Contains(cronExpr, "TZ=") {
			return nil, errs.Field("cron", "must not name a time zone; use the timezone field")
		}
		var sched cron.Schedule
		var perr error
		if len(strings.Fields(cronExpr)) == 6 {
			sched, perr = cronSeconds.Parse(cronExpr)
		} else {
			sched, perr = cron.ParseStandard(cronExpr)
		}
		if perr != nil {
			return nil, errs.Field("cron", "invalid cron expression %q (5 fields, or 6 with seconds first): %v", cronExpr, perr)
		}
		return cronIn{sched, loc}, nil
	}
	return nil, errs.Field("cron", "one of cron or every is required")
}

// cronIn evaluates a cron schedule in a time zone.
type cronIn struct {
	s   cron.Schedule
	loc *time.Location
}

func (c cronIn) Next(t time.Time) time.Time { return c.s.Next(t.In(c.loc)).UTC() }

func specOf(sc store.Schedule) (tickSpec, error) { return parseSpec(sc.Cron, sc.Every, sc.Timezone) }

// createScheduleRequest is the body of POST /v1/schedules.
type createScheduleRequest struct {
	AgentID       string          `json:"agent_id"`
	Cron          string          `json:"cron"`
	Every         string          `json:"every"`
	Timezone      string          `json:"timezone"`
	Input         json.RawMessage `json:"input"`
	ThreadID      string          `json:"thread_id"`
	MisfirePolicy string          `json:"misfire_policy"`
	CatchUpMax    *int            `json:"catch_up_max"`
}

var threadIDRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,128}$`)

func (s *Server) handleCreateSchedule(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsCreate)
	if err != nil {
		return err
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	var req createScheduleRequest
	if err := httpx.DecodeBytes(body, &req); err != nil {
		return err
	}
	sc, err := s.newSchedule(r.Context(), ac, req)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.CreateSchedule(r.Context(), sc); err != nil {
		return err
	}
	s.auditHook(r.Context(), ac, "schedule.create", "schedule/"+sc.ScheduleID, map[string]any{"agent_id": sc.AgentID,
		"cron": sc.Cron, "every": sc.Every, "timezone": sc.Timezone})
	w.Header().Set("Location", "/v1/schedules/"+sc.ScheduleID)
	httpx.JSON(w, r, http.StatusCreated, map[string]any{"schedule": sc})
	return nil
}

// newSchedule validates a create request into a schedule whose first
// tick is the first after now.
func (s *Server) newSchedule(ctx context.Context, ac auth.Context, req createScheduleRequest) (store.Schedule, error) {
	if req.AgentID == "" {
		return store.Schedule{}, errs.Field("agent_id", "is required")
	}
	if req.Timezone == "" {
		req.Timezone = "UTC"
	}
	spec, err := parseSpec(req.Cron, req.Every, req.Timezone)
	if err != nil {
		return store.Schedule{}, err
	}
	in, err := parseRunInput(req.Input)
	if err != nil {
		return store.Schedule{}, err
	}
	if req.ThreadID != "" && !threadIDRE.MatchString(req.ThreadID) {
		return store.Schedule{}, errs.Field("thread_id", "must be 1 to 128 letters, digits, '_', '.' or '-'")
	}
	if req.ThreadID != "" {
		if _, err := s.getThread(ctx, ac.TenantID, req.ThreadID); errs.CodeOf(err) == errs.NotFound {
			return store.Schedule{}, errs.E(errs.NotFound, "thread %s not found", req.ThreadID).WithDetails(map[string]any{"field": "thread_id"})
		} else if err != nil {
			return store.Schedule{}, err
		}
	}
	sc := store.Schedule{TenantID: ac.TenantID, ScheduleID: ids.New("sch_"), AgentID: req.AgentID, Cron: req.Cron,
		Every: req.Every, Timezone: req.Timezone, ThreadID: req.ThreadID, Status: store.ScheduleActive,
		MisfirePolicy: store.MisfireSkip, PrincipalID: ac.Principal.PrincipalID, Scopes: ac.Scopes, Roles: ac.Roles}
	switch req.MisfirePolicy {
	case "", store.MisfireSkip:
		if req.CatchUpMax != nil && *req.CatchUpMax != 0 {
			return store.Schedule{}, errs.Field("catch_up_max", "applies only with misfire_policy \"catch_up\"")
		}
	case store.MisfireCatchUp:
		sc.MisfirePolicy, sc.CatchUpMax = store.MisfireCatchUp, 1
		if req.CatchUpMax != nil {
			if *req.CatchUpMax < 1 || *req.CatchUpMax > maxCatchUp {
				return store.Schedule{}, errs.Field("catch_up_max", "must be between 1 and %d", maxCatchUp)
			}
			sc.CatchUpMax = *req.CatchUpMax
		}
	default:
		return store.Schedule{}, errs.Field("misfire_policy", "must be skip or catch_up, got %q", req.MisfirePolicy)
	}
	if _, err := s.cfg.Store.GetAgent(ctx, ac.TenantID, req.AgentID); errors.Is(err, errs.ErrNotFound) {
		return store.Schedule{}, errs.E(errs.NotFound, "agent %s not found", req.AgentID).WithDetails(map[string]any{"field": "agent_id"})
	} else if err != nil {
		return store.Schedule{}, err
	}
	sc.Input, _ = json.Marshal(in) // plain data
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	next := spec.Next(now).Truncate(time.Microsecond)
	sc.NextRunAt, sc.CreatedAt, sc.UpdatedAt = &next, now, now
	return sc, nil
}

func (s *Server) getSchedule(ctx context.Context, tenantID, id string) (store.Schedule, error) {
	sc, err := s.cfg.Store.GetSchedule(ctx, tenantID, id)
	if errors.Is(err, errs.ErrNotFound) {
		return sc, errs.E(errs.NotFound, "schedule %s not found", id)
	}
	return sc, err
}

func (s *Server) handleGetSchedule(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	sc, err := s.getSchedule(r.Context(), ac.TenantID, r.PathValue("schedule_id"))
	if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"schedule": sc})
	return nil
}

func (s *Server) handleListSchedules(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	p := store.ListSchedulesParams{TenantID: ac.TenantID, Cursor: q.Get("cursor"), Limit: 50}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return errs.Field("limit", "must be an integer between 1 and 500")
		}
		p.Limit = n
	}
	list, next, err := s.cfg.Store.ListSchedules(r.Context(), p)
	if err != nil {
		return err
	}
	var nextCursor any
	if next != "" {
		nextCursor = next
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"schedules": list, "next_cursor": nextCursor})
	return nil
}

func (s *Server) handleDeleteSchedule(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsCreate)
	if err != nil {
		return err
	}
	id := r.PathValue("schedule_id")
	if err := s.cfg.Store.DeleteSchedule(r.Context(), ac.TenantID, id); errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "schedule %s not found", id)
	} else if err != nil {
		return err
	}
	s.auditHook(r.Context(), ac, "schedule.delete", "schedule/"+id, nil)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleScheduleAction serves POST /v1/schedules/{id}:pause and :resume.
// Pausing a paused schedule (or resuming an active one) changes nothing.
// A resumed schedule fires from its first tick after now: the ticks of
// the pause are not caught up.
func (s *Server) handleScheduleAction(w http.ResponseWriter, r *http.Request) error {
	id, action, ok := strings.Cut(r.PathValue("schedule_action"), ":")
	if !ok || (action != "pause" && action != "resume") {
		return errs.E(errs.NotFound, "no route for POST %s (did you mean /v1/schedules/{schedule_id}:pause or :resume?)", r.URL.Path)
	}
	ac, err := requireTenant(r.Context(), auth.ScopeRunsCreate)
	if err != nil {
		return err
	}
	sc, err := s.getSchedule(r.Context(), ac.TenantID, id)
	if err != nil {
		return err
	}
	status, next := store.SchedulePaused, (*time.Time)(nil)
	if action == "resume" {
		if sc.Status == store.ScheduleActive {
			httpx.JSON(w, r, http.StatusOK, map[string]any{"schedule": sc})
			return nil
		}
		spec, err := specOf(sc)
		if err != nil {
			return err
		}
		n := spec.Next(s.cfg.Now().UTC()).Truncate(time.Microsecond)
		status, next = store.ScheduleActive, &n
	} else if sc.Status == store.SchedulePaused {
		httpx.JSON(w, r, http.StatusOK, map[string]any{"schedule": sc})
		return nil
	}
	sc, err = s.cfg.Store.SetScheduleStatus(r.Context(), ac.TenantID, id, status, next, s.cfg.Now().UTC())
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "schedule %s not found", id)
	} else if err != nil {
		return err
	}
	s.auditHook(r.Context(), ac, "schedule."+action, "schedule/"+id, nil)
	httpx.JSON(w, r, http.StatusOK, map[string]any{"schedule": sc})
	return nil
}

// tickSchedules is the schedule loop of every replica: each poll it fires
// the due ticks of every tenant's schedules. Replicas need no leader: a
// tick's run is created with the idempotency key "schedule:<id>:<tick>",
// so two replicas firing the same tick create one run (the second gets
// the first's back), and advancing a schedule is a compare-and-set on its
// next tick.
func (s *Server) tickSchedules(ctx context.Context) {
	poll := s.cfg.Node.SchedulePoll
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.cfg.Now().UTC()
		due, err := s.cfg.Store.DueSchedules(ctx, now, dueSchedulesMax)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("read due schedules", "err", err)
			}
			continue
		}
		for _, sc := range due {
			s.fireSchedule(ctx, sc, now)
		}
	}
}

// dueTicks splits sc's ticks from NextRunAt to now into those to fire,
// oldest first (every tick less than grace late, and with catch_up the
// latest CatchUpMax of the missed ones) and the number skipped; next is
// the first tick after now.
func dueTicks(sc store.Schedule, spec tickSpec, now time.Time, grace time.Duration) (fire []time.Time, skipped int, next time.Time) {
	var missed []time.Time
	t := *sc.NextRunAt
	for i := 0; !t.After(now); i++ {
		if i == maxTickScan { // down for very long: resume after now
			skipped += i - len(fire) - len(missed)
			t = spec.Next(now)
			break
		}
		if now.Sub(t) > grace || len(fire) == maxFirePerPoll {
			missed = append(missed, t)
		} else {
			fire = append(fire, t)
		}
		t = spec.Next(t)
	}
	keep := 0
	if sc.MisfirePolicy == store.MisfireCatchUp {
		keep = min(sc.CatchUpMax, len(missed))
	}
	skipped += len(missed) - keep
	caught := missed[len(missed)-keep:]
	return append(append([]time.Time{}, caught...), fire...), skipped, t.Truncate(time.Microsecond)
}

// fireSchedule creates the runs of sc's due ticks and advances it. A
// retryable failure (rate limit, store down) leaves the schedule where it
// is, to be tried at the next poll; any other failure is recorded on the
// schedule (last_error) and the tick is passed.
func (s *Server) fireSchedule(ctx context.Context, sc store.Schedule, now time.Time) {
	if sc.NextRunAt == nil {
		return // paused meanwhile
	}
	spec, err := specOf(sc)
	if err != nil {
		s.log.Warn("schedule has an invalid spec", "schedule_id", sc.ScheduleID, "err", err)
		return
	}
	grace := s.cfg.Node.ScheduleMisfireGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	fire, skipped, next := dueTicks(sc, spec, now, grace)
	if skipped > 0 {
		s.hookMetrics.scheduleTicks.WithLabelValues("skipped").Add(float64(skipped))
	}
	adv := store.AdvanceScheduleParams{TenantID: sc.TenantID, ScheduleID: sc.ScheduleID, FromNextRunAt: *sc.NextRunAt,
		NextRunAt: next, UpdatedAt: now}
	for _, tick := range fire {
		runID, replayed, err := s.createScheduledRun(ctx, sc, tick)
		switch {
		case err != nil && errs.CodeOf(err).Retryable():
			s.hookMetrics.scheduleTicks.WithLabelValues("error").Inc()
			s.log.Warn("schedule tick: run not created, retrying", "schedule_id", sc.ScheduleID, "tick", tick, "err", err)
			// Advance past the ticks fired so far only.
			if adv.LastTickAt == nil {
				return
			}
			adv.NextRunAt = tick
			_, _ = s.cfg.Store.AdvanceSchedule(ctx, adv)
			return
		case err != nil:
			s.hookMetrics.scheduleTicks.WithLabelValues("error").Inc()
			adv.LastError = truncate(err.Error(), 500)
		case replayed:
			s.hookMetrics.scheduleTicks.WithLabelValues("replayed").Inc()
			adv.LastRunID, adv.LastError = runID, ""
		default:
			s.hookMetrics.scheduleTicks.WithLabelValues("created").Inc()
			adv.LastRunID, adv.LastError = runID, ""
		}
		adv.LastTickAt = &tick
	}
	if _, err := s.cfg.Store.AdvanceSchedule(ctx, adv); err != nil && ctx.Err() == nil {
		s.log.Warn("advance schedule", "schedule_id", sc.ScheduleID, "err", err)
	}
}

// scheduleMultitaskStrategy is what a schedule's tick does when its
// thread has an active run (a tick still running, or a person's run): it
// waits behind it. A tick is never lost to a busy thread (reject) and
// never cuts another run short (interrupt, rollback).
const scheduleMultitaskStrategy = store.MultitaskEnqueue

// createScheduledRun creates tick's run through the shared in-process
// admission (createRunInternal), as the schedule's creator, so every rule
// of an API create applies: agent status, entitlements, rate limits,
// webhooks, idempotency, audit. A schedule with a thread_id creates the
// run on that thread as POST /v1/threads/{thread_id}/runs does (history
// window, its turn appended), with scheduleMultitaskStrategy. The run's
// context labels name the schedule and tick; its idempotency key
// "schedule:<id>:<tick>" makes one run per tick across replicas.
func (s *Server) createScheduledRun(ctx context.Context, sc store.Schedule, tick time.Time) (string, bool, error) {
	tickText := tick.UTC().Format(time.RFC3339Nano)
	ac := auth.Context{TenantID: sc.TenantID, Principal: auth.Principal{PrincipalID: sc.PrincipalID, PrincipalType: "user"},
		Scopes: sc.Scopes, Roles: sc.Roles, Method: "schedule"}
	rctx := auth.With(ctx, ac)
	rctx = httpx.WithCorrelationID(rctx, ids.New("corr_"))
	rctx = httpx.WithTrace(rctx, httpx.ParseTraceparent(""))
	p := internalRun{AgentID: sc.AgentID, IdempotencyKey: "schedule:" + sc.ScheduleID + ":" + tickText,
		Body: map[string]any{
			"input":   sc.Input,
			"context": map[string]any{"labels": map[string]string{"agentos.schedule_id": sc.ScheduleID, "agentos.tick": tickText}},
		}}
	if sc.ThreadID != "" {
		p.ThreadID, p.MultitaskStrategy = sc.ThreadID, scheduleMultitaskStrategy
	}
	run, replayed, err := s.createRunInternal(rctx, p)
	if err != nil {
		return "", false, err
	}
	return run.RunID, replayed, nil
}
