package agentorchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/stdwebhook"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools/builtin"
)

// Webhook delivery tuning. A delivery is leased for deliveryLease while
// one replica tries it (longer than deliveryTimeout, so a live claimant
// never loses it mid-attempt; a dead one's deliveries come back after it).
const (
	webhookPoll         = 500 * time.Millisecond
	deliveryLease       = 30 * time.Second
	deliveryTimeout     = 15 * time.Second
	deliveryBatch       = 32
	deliveryConcurrency = 8
	maxRetryDelay       = time.Hour
	// previousSecretTTL is how long a rotated-out secret still signs.
	previousSecretTTL = 24 * time.Hour
	maxWebhookURL     = 2048
	// maxWebhookEndpoints bounds a tenant's default endpoints.
	maxWebhookEndpoints = 10
)

// hookMetrics count webhook deliveries and schedule ticks.
type hookMetrics struct {
	deliveries    *prometheus.CounterVec // by outcome: succeeded, retried, failed
	scheduleTicks *prometheus.CounterVec // by outcome: created, replayed, skipped, error
}

func newHookMetrics(reg prometheus.Registerer) *hookMetrics {
	m := &hookMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome: succeeded (2xx), retried (failed, another attempt scheduled), failed (given up)."}, []string{"outcome"}),
		scheduleTicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_schedule_ticks_total",
			Help: "Schedule ticks by outcome: created (a run), replayed (another replica created it), skipped (missed, by misfire policy), error."}, []string{"outcome"}),
	}
	reg.MustRegister(m.deliveries, m.scheduleTicks)
	return m
}

// webhookRequest is a run-create body's "webhook".
type webhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// parseWebhook validates a run's webhook: an absolute http(s) URL and
// events ["terminal"] (the default) or ["all"]. Whether the URL's address
// may be reached is decided when delivering (the SSRF guard resolves the
// name then, as DNS answers may change).
func parseWebhook(w *webhookRequest) (*store.WebhookTarget, error) {
	if w == nil {
		return nil, nil
	}
	if err := checkHookURL("webhook.url", w.URL); err != nil {
		return nil, err
	}
	ev, err := webhookEvents("webhook.events", w.Events)
	if err != nil {
		return nil, err
	}
	return &store.WebhookTarget{URL: w.URL, Events: ev}, nil
}

func checkHookURL(field, raw string) error {
	if raw == "" {
		return errs.Field(field, "is required")
	}
	if len(raw) > maxWebhookURL {
		return errs.Field(field, "must be at most %d characters", maxWebhookURL)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return errs.Field(field, "must be an absolute http or https URL without credentials or fragment")
	}
	return nil
}

func webhookEvents(field string, in []string) (string, error) {
	switch {
	case len(in) == 0:
		return store.WebhookEventsTerminal, nil
	case len(in) == 1 && (in[0] == store.WebhookEventsTerminal || in[0] == store.WebhookEventsAll):
		return in[0], nil
	}
	return "", errs.Field(field, `must be ["terminal"] or ["all"]`)
}

// webhookTargets are where a new run's events go: its own webhook, then
// the tenant's default endpoints.
func (s *Server) webhookTargets(ctx context.Context, tenantID string, own *store.WebhookTarget) ([]store.WebhookTarget, error) {
	eps, err := s.cfg.Store.ListWebhookEndpoints(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	var out []store.WebhookTarget
	if own != nil {
		out = append(out, *own)
	}
	for _, e := range eps {
		out = append(out, store.WebhookTarget{URL: e.URL, Events: e.Events, EndpointID: e.EndpointID})
	}
	return out, nil
}

func (s *Server) registerHookRoutes(api *http.ServeMux) {
	api.Handle("GET /v1/runs/{run_id}/webhook-deliveries", httpx.H(s.handleListDeliveries))
	api.Handle("GET /v1/webhooks/endpoints", httpx.H(s.handleListEndpoints))
	api.Handle("PUT /v1/webhooks/endpoints/{endpoint_id}", httpx.H(s.handlePutEndpoint))
	api.Handle("DELETE /v1/webhooks/endpoints/{endpoint_id}", httpx.H(s.handleDeleteEndpoint))
	api.Handle("GET /v1/webhooks/secret", httpx.H(s.handleGetSecret))
	api.Handle("POST /v1/webhooks/{secret_action}", httpx.H(s.handleRotateSecret))
	api.Handle("POST /v1/schedules", httpx.H(s.handleCreateSchedule))
	api.Handle("GET /v1/schedules", httpx.H(s.handleListSchedules))
	api.Handle("GET /v1/schedules/{schedule_id}", httpx.H(s.handleGetSchedule))
	api.Handle("DELETE /v1/schedules/{schedule_id}", httpx.H(s.handleDeleteSchedule))
	api.Handle("POST /v1/schedules/{schedule_action}", httpx.H(s.handleScheduleAction))
}

func (s *Server) handleListDeliveries(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	runID := r.PathValue("run_id")
	ds, err := s.cfg.Store.ListWebhookDeliveries(r.Context(), ac.TenantID, runID)
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "run %s not found", runID)
	} else if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"deliveries": ds})
	return nil
}

// requireHookAdmin returns the caller if it administers its tenant's
// webhooks (tenant_admin, or a platform admin naming the tenant).
func requireHookAdmin(r *http.Request) (auth.Context, error) {
	ac, err := requireTenant(r.Context(), auth.ScopeAdmin)
	if err != nil {
		return ac, err
	}
	if !ac.IsAdminOf(ac.TenantID) {
		return ac, errs.E(errs.Forbidden, "webhook endpoints and secrets need the tenant_admin or platform_admin role")
	}
	return ac, nil
}

func (s *Server) handleListEndpoints(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireHookAdmin(r)
	if err != nil {
		return err
	}
	eps, err := s.cfg.Store.ListWebhookEndpoints(r.Context(), ac.TenantID)
	if err != nil {
		return err
	}
	if eps == nil {
		eps = []store.WebhookEndpoint{}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"endpoints": eps})
	return nil
}

var endpointIDRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)

func (s *Server) handlePutEndpoint(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireHookAdmin(r)
	if err != nil {
		return err
	}
	id := r.PathValue("endpoint_id")
	if !endpointIDRE.MatchString(id) {
		return errs.Field("endpoint_id", "must be 1 to 64 letters, digits, '_', '.' or '-'")
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	var req struct {
		Endpoint *webhookRequest `json:"endpoint"`
		webhookRequest
	}
	if err := httpx.DecodeBytes(body, &req); err != nil {
		return err
	}
	in := req.webhookRequest
	if req.Endpoint != nil {
		in = *req.Endpoint
	}
	if err := checkHookURL("url", in.URL); err != nil {
		return err
	}
	ev, err := webhookEvents("events", in.Events)
	if err != nil {
		return err
	}
	// Every event of every run goes to each endpoint: their number is bounded.
	existing, err := s.cfg.Store.ListWebhookEndpoints(r.Context(), ac.TenantID)
	if err != nil {
		return err
	}
	if len(existing) >= maxWebhookEndpoints && !slices.ContainsFunc(existing, func(e store.WebhookEndpoint) bool { return e.EndpointID == id }) {
		return errs.E(errs.QuotaExceeded, "tenant %s has %d webhook endpoints, the most allowed", ac.TenantID, len(existing)).
			WithDetails(map[string]any{"limit": maxWebhookEndpoints, "used": len(existing)})
	}
	now := s.cfg.Now().UTC()
	e := store.WebhookEndpoint{TenantID: ac.TenantID, EndpointID: id, URL: in.URL, Events: ev, CreatedAt: now, UpdatedAt: now}
	if err := s.cfg.Store.PutWebhookEndpoint(r.Context(), e); err != nil {
		return err
	}
	s.auditHook(r.Context(), ac, "webhook.endpoint.put", "webhook_endpoint/"+id, map[string]any{"url": in.URL, "events": ev})
	eps, err := s.cfg.Store.ListWebhookEndpoints(r.Context(), ac.TenantID)
	if err != nil {
		return err
	}
	for _, got := range eps {
		if got.EndpointID == id {
			e = got
		}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"endpoint": e})
	return nil
}

func (s *Server) handleDeleteEndpoint(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireHookAdmin(r)
	if err != nil {
		return err
	}
	id := r.PathValue("endpoint_id")
	if err := s.cfg.Store.DeleteWebhookEndpoint(r.Context(), ac.TenantID, id); errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "webhook endpoint %s not found", id)
	} else if err != nil {
		return err
	}
	s.auditHook(r.Context(), ac, "webhook.endpoint.delete", "webhook_endpoint/"+id, nil)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// secretBody is the secret as the API shows it.
func secretBody(sec store.WebhookSecret) map[string]any {
	out := map[string]any{"secret": sec.Secret, "created_at": sec.CreatedAt, "previous_valid_until": nil}
	if sec.Previous != "" && !sec.PreviousUntil.IsZero() {
		out["previous_valid_until"] = sec.PreviousUntil
	}
	return out
}

func (s *Server) handleGetSecret(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireHookAdmin(r)
	if err != nil {
		return err
	}
	sec, err := s.webhookSecret(r.Context(), ac.TenantID)
	if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"webhook_secret": secretBody(sec)})
	return nil
}

func (s *Server) handleRotateSecret(w http.ResponseWriter, r *http.Request) error {
	if r.PathValue("secret_action") != "secret:rotate" {
		return errs.E(errs.NotFound, "no route for POST %s (did you mean /v1/webhooks/secret:rotate?)", r.URL.Path)
	}
	ac, err := requireHookAdmin(r)
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	sec, err := s.cfg.Store.RotateWebhookSecret(r.Context(), store.WebhookSecret{TenantID: ac.TenantID,
		Secret: stdwebhook.NewSecret(), CreatedAt: now, PreviousUntil: now.Add(previousSecretTTL)})
	if err != nil {
		return err
	}
	s.auditHook(r.Context(), ac, "webhook.secret.rotate", "tenant/"+ac.TenantID, nil)
	httpx.JSON(w, r, http.StatusOK, map[string]any{"webhook_secret": secretBody(sec)})
	return nil
}

// webhookSecret returns the tenant's signing secret, made on first use.
func (s *Server) webhookSecret(ctx context.Context, tenantID string) (store.WebhookSecret, error) {
	return s.cfg.Store.EnsureWebhookSecret(ctx, store.WebhookSecret{TenantID: tenantID,
		Secret: stdwebhook.NewSecret(), CreatedAt: s.cfg.Now().UTC()})
}

func (s *Server) auditHook(ctx context.Context, ac auth.Context, action, target string, details map[string]any) {
	if _, err := s.cfg.Audit.Record(ctx, store.AuditRecord{TenantID: ac.TenantID, PrincipalID: ac.Principal.PrincipalID,
		Action: action, Target: target, Outcome: "ok", CorrelationID: httpx.CorrelationID(ctx), Details: details}); err != nil {
		s.log.Warn("audit", "action", action, "err", err)
	}
}

// deliverWebhooks is the dispatcher loop: every webhookPoll it claims due
// deliveries of every tenant (other replicas claim others) and attempts
// them, a few at a time, until ctx ends.
func (s *Server) deliverWebhooks(ctx context.Context) {
	t := time.NewTicker(webhookPoll)
	defer t.Stop()
	sem := make(chan struct{}, deliveryConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		ds, err := s.cfg.Store.ClaimWebhookDeliveries(ctx, store.ClaimDeliveriesParams{Owner: s.owner,
			Now: s.cfg.Now(), Lease: deliveryLease, Limit: deliveryBatch})
		if err != nil && ctx.Err() == nil {
			s.log.Warn("claim webhook deliveries", "err", err)
		}
		for _, d := range ds {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				s.attemptDelivery(ctx, d)
			}()
		}
		if len(ds) == deliveryBatch {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// attemptDelivery makes one attempt of d and records it: succeeded on a
// 2xx, else another attempt after a backoff, or failed once the retry
// window is over (or at once on 410 Gone and a refused address).
func (s *Server) attemptDelivery(ctx context.Context, d store.WebhookDelivery) {
	start := s.cfg.Now().UTC()
	code, final, err := s.send(ctx, d, start)
	if ctx.Err() != nil {
		return // shutting down: the lease expires and the attempt is made again
	}
	a := store.WebhookAttempt{Attempt: len(d.Attempts) + 1, At: start, StatusCode: code,
		DurationMs: s.cfg.Now().Sub(start).Milliseconds()}
	p := store.FinishAttemptParams{TenantID: d.TenantID, DeliveryID: d.DeliveryID, Owner: s.owner, Status: store.DeliverySucceeded}
	outcome := "succeeded"
	if err != nil {
		a.Error = truncate(err.Error(), 500)
		next := start.Add(retryDelay(s.cfg.Node.WebhookRetryBase, a.Attempt))
		retryFor := s.cfg.Node.WebhookRetryFor
		if retryFor <= 0 {
			retryFor = 24 * time.Hour
		}
		if final || next.After(d.CreatedAt.Add(retryFor)) {
			p.Status, outcome = store.DeliveryFailed, "failed"
		} else {
			p.Status, p.NextAttemptAt, outcome = store.DeliveryPending, &next, "retried"
		}
	}
	p.Attempt = a
	if err := s.cfg.Store.FinishWebhookAttempt(context.WithoutCancel(ctx), p); err != nil {
		s.log.Warn("record webhook attempt", "delivery_id", d.DeliveryID, "err", err)
		return
	}
	s.hookMetrics.deliveries.WithLabelValues(outcome).Inc()
}

// retryDelay is attempt n's backoff: base·2^(n-1), at most maxRetryDelay,
// with "equal jitter" (between half and all of it) so that deliveries
// failing together do not retry together.
func retryDelay(base time.Duration, n int) time.Duration {
	if base <= 0 {
		base = 5 * time.Second
	}
	d := base
	for i := 1; i < n && d < maxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, maxRetryDelay)
	return d/2 + rand.N(d/2+1)
}

// send POSTs the delivery's event, signed; it returns the status code (0
// without an answer) and whether a failure is final.
func (s *Server) send(ctx context.Context, d store.WebhookDelivery, now time.Time) (int, bool, error) {
	evs, err := s.cfg.Store.ListEvents(ctx, store.ListEventsParams{TenantID: d.TenantID, RunID: d.RunID,
		AfterSequence: d.Sequence - 1, Limit: 1})
	if err != nil {
		return 0, errors.Is(err, errs.ErrNotFound), fmt.Errorf("read event: %w", err)
	}
	if len(evs) == 0 || evs[0].Sequence != d.Sequence {
		return 0, true, fmt.Errorf("event %d of run %s is gone", d.Sequence, d.RunID)
	}
	ev := evs[0]
	body, err := json.Marshal(map[string]any{"type": ev.Type, "timestamp": ev.Time, "data": ev})
	if err != nil {
		return 0, true, err
	}
	sec, err := s.webhookSecret(ctx, d.TenantID)
	if err != nil {
		return 0, false, fmt.Errorf("signing secret: %w", err)
	}
	prev := ""
	if sec.Previous != "" && now.Before(sec.PreviousUntil) {
		prev = sec.Previous
	}
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return 0, true, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "AgentOS-Webhooks/1")
	if err := stdwebhook.SetHeaders(req.Header, d.DeliveryID, now, body, sec.Secret, prev); err != nil {
		return 0, true, err
	}
	resp, err := s.deliveryClient.Do(req)
	if err != nil {
		return 0, errs.CodeOf(err) == errs.Forbidden, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, false, nil
	case resp.StatusCode == http.StatusGone:
		return resp.StatusCode, true, errors.New("HTTP 410 Gone: the receiver wants no more deliveries")
	}
	return resp.StatusCode, false, fmt.Errorf("HTTP %d", resp.StatusCode)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// defaultDeliveryClient is the client of webhook deliveries when Config
// sets none: the SSRF guard of tool.http.fetch with AGENTOS_WEBHOOK_ALLOW
// (never the fetch tool's list), no redirects followed.
func defaultDeliveryClient(allow string) (*http.Client, error) {
	rules, err := builtin.ParseAllow(allow)
	if err != nil {
		return nil, fmt.Errorf("AGENTOS_WEBHOOK_ALLOW: %w", err)
	}
	c := builtin.GuardedClient(builtin.HTTPFetchConfig{Allow: rules, MaxRedirects: -1, Timeout: deliveryTimeout})
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c, nil
}
