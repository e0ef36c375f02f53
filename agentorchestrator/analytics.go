package agentorchestrator

import (
	"math"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tenancy"
)

// analyticsMaxRuns bounds how many runs one usage report reads (newest
// first); a report that reaches it says so with runs_truncated.
const analyticsMaxRuns = 5000

// analyticsMaxBuckets bounds the series one report returns.
const analyticsMaxBuckets = 1000

// registerAnalyticsRoutes adds the read-only aggregates the web console
// draws (console/): usage over time and the audit chain's status.
func (s *Server) registerAnalyticsRoutes(api *http.ServeMux) {
	api.Handle("GET /v1/analytics/usage", httpx.H(s.handleUsageReport))
	api.Handle("GET /v1/admin/audit:verify", httpx.H(s.handleAuditVerify))
}

// usageBucket is one interval of a usage report.
type usageBucket struct {
	Start        time.Time        `json:"start,omitzero"`
	Runs         int64            `json:"runs"`
	RunsByStatus map[string]int64 `json:"runs_by_status"`
	Requests     int64            `json:"requests"`
	InputTokens  int64            `json:"input_tokens"`
	OutputTokens int64            `json:"output_tokens"`
	TotalTokens  int64            `json:"total_tokens"`
	CostUSD      float64          `json:"cost_usd"`
	// RunLatencyMS are percentiles of the duration (created to completed)
	// of the runs created in the bucket that have ended; nil when none has.
	RunLatencyMS *latencyPercentiles `json:"run_latency_ms"`
	durations    []float64
}

type latencyPercentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
}

// handleUsageReport answers GET /v1/analytics/usage: the tenant's runs
// (by status, latency percentiles) and model usage (requests, tokens,
// cost) over [since, until) in buckets, the totals, and the token budget's
// current window. With run_id, the model usage is that run's only and its
// ledger records are listed. Model usage follows GET /v1/usage's rule: a tenant
// admin sees the whole tenant, anyone else only their own principal's.
func (s *Server) handleUsageReport(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	now := s.cfg.Now().UTC()
	until, since := now, now.Add(-24*time.Hour)
	for name, dst := range map[string]*time.Time{"since": &since, "until": &until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return errs.Field(name, "must be an RFC3339 timestamp")
			}
			*dst = t.UTC()
		}
	}
	if !since.Before(until) {
		return errs.Field("since", "must be before until")
	}
	bucket := time.Hour
	switch b := q.Get("bucket"); b {
	case "minute":
		bucket = time.Minute
	case "hour", "":
	case "day":
		bucket = 24 * time.Hour
	default:
		return errs.Field("bucket", "must be minute, hour or day")
	}
	start := since.Truncate(bucket)
	n := int(until.Sub(start)/bucket) + 1
	if n > analyticsMaxBuckets {
		return errs.Field("bucket", "too many buckets between since and until (at most 1000): choose a larger bucket or a shorter span")
	}
	buckets := make([]*usageBucket, n)
	for i := range buckets {
		buckets[i] = &usageBucket{Start: start.Add(time.Duration(i) * bucket), RunsByStatus: map[string]int64{}}
	}
	at := func(t time.Time) *usageBucket {
		t = t.UTC()
		if t.Before(since) || !t.Before(until) {
			return nil
		}
		return buckets[int(t.Sub(start)/bucket)]
	}
	tenantID := ac.TenantID
	total := &usageBucket{RunsByStatus: map[string]int64{}}

	truncated, err := s.reportRuns(r, tenantID, since, at, total)
	if err != nil {
		return err
	}
	f := store.UsageFilter{TenantID: tenantID, RunID: q.Get("run_id"), Since: since, Until: until}
	if !ac.IsAdminOf(tenantID) {
		f.PrincipalID = ac.Principal.PrincipalID
	}
	recs, err := s.cfg.Store.ListUsage(r.Context(), f)
	if err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "cannot read usage")
	}
	for _, u := range recs {
		for _, b := range []*usageBucket{at(u.Time), total} {
			if b == nil {
				continue
			}
			b.Requests++
			b.InputTokens += u.InputTokens
			b.OutputTokens += u.OutputTokens
			b.TotalTokens += u.InputTokens + u.OutputTokens
			b.CostUSD += u.CostUSD
		}
	}
	for _, b := range append(buckets, total) {
		b.RunLatencyMS = percentiles(b.durations)
	}

	tenant, err := s.cfg.Store.GetTenant(r.Context(), tenantID)
	if err != nil {
		return err
	}
	var budget map[string]any
	if tb := tenant.Quotas.Models.TokenBudget; tb.MaxTokens > 0 || tb.MaxCostUSD > 0 {
		ws := tenancy.WindowStart(tb.Window, now)
		used, err := s.cfg.Store.BudgetUsage(r.Context(), tenantID, tb.Window, ws)
		if err != nil {
			return errs.Wrap(errs.DependencyUnavailable, err, "cannot read budget usage")
		}
		budget = map[string]any{"window": tb.Window, "window_start": ws, "max_tokens": tb.MaxTokens,
			"max_cost_usd": tb.MaxCostUSD, "used_tokens": used.UsedTokens, "used_cost_usd": used.UsedCostUSD}
	}
	series := make([]usageBucket, n)
	for i, b := range buckets {
		series[i] = *b
	}
	bucketName := map[time.Duration]string{time.Minute: "minute", time.Hour: "hour", 24 * time.Hour: "day"}[bucket]
	usageScope := "tenant"
	if f.PrincipalID != "" {
		usageScope = "principal"
	}
	report := map[string]any{
		"tenant_id": tenantID, "since": since, "until": until, "bucket": bucketName,
		"usage_scope": usageScope, "runs_truncated": truncated,
		"totals": total, "series": series, "budget": budget, "quotas": tenant.Quotas,
	}
	if f.RunID != "" {
		// One run's ledger rows, so the console can show each model call's cost.
		if recs == nil {
			recs = []store.UsageRecord{}
		}
		report["run_id"], report["records"] = f.RunID, recs
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"report": report})
	return nil
}

// reportRuns counts the tenant's runs created in [since, until) into
// their buckets and total, newest first, reading at most analyticsMaxRuns.
func (s *Server) reportRuns(r *http.Request, tenantID string, since time.Time, at func(time.Time) *usageBucket, total *usageBucket) (truncated bool, err error) {
	p := store.ListRunsParams{TenantID: tenantID, Limit: 500}
	read := 0
	for {
		runs, next, err := s.cfg.Store.ListRuns(r.Context(), p)
		if err != nil {
			return false, err
		}
		for _, run := range runs {
			if run.CreatedAt.Before(since) {
				return false, nil
			}
			if read++; read > analyticsMaxRuns {
				return true, nil
			}
			b := at(run.CreatedAt)
			if b == nil {
				continue // created after until
			}
			for _, b := range []*usageBucket{b, total} {
				b.Runs++
				b.RunsByStatus[string(run.Status)]++
				if run.CompletedAt != nil {
					b.durations = append(b.durations, float64(run.CompletedAt.Sub(run.CreatedAt).Milliseconds()))
				}
			}
		}
		if next == "" {
			return false, nil
		}
		p.Cursor = next
	}
}

// percentiles uses the nearest-rank method.
func percentiles(d []float64) *latencyPercentiles {
	if len(d) == 0 {
		return nil
	}
	d = slices.Clone(d)
	sort.Float64s(d)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(d)))) - 1
		return d[max(i, 0)]
	}
	return &latencyPercentiles{Count: len(d), P50: rank(50), P95: rank(95), P99: rank(99)}
}

// handleAuditVerify answers GET /v1/admin/audit:verify: it verifies the
// whole hash chain (one chain for every tenant). A platform admin gets
// the details; a tenant admin only whether it holds, since the counts
// and the broken record may belong to other tenants.
func (s *Server) handleAuditVerify(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireAdmin(r, "")
	if err != nil {
		return err
	}
	res, err := audit.VerifyLog(r.Context(), s.cfg.Store, 0)
	if err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "cannot read the audit log")
	}
	out := map[string]any{"ok": res.OK, "checked_at": s.cfg.Now().UTC()}
	if ac.HasRole(auth.RolePlatformAdmin) {
		out["records"], out["head_seq"], out["head_hash"] = res.Records, res.HeadSeq, res.HeadHash
		if !res.OK {
			out["broken_seq"], out["broken_id"], out["reason"] = res.BrokenSeq, res.BrokenID, res.Reason
		}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"verify": out})
	return nil
}
