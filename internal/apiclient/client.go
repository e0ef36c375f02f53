// Package apiclient is a small typed client for the AgentOS services' HTTP
// APIs, used by the CLI. A service's error answer (any non-2xx status) is
// returned as the *errs.Error it encodes (httpx.DecodeErrorFrom), so callers
// test it with errors.Is(err, errs.ErrNotFound) and the like; a request that
// gets no answer fails with the transport's error.
package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
)

// Client is a small typed client for the orchestrator's runs and admin APIs
// and model-policy's policy check. Credentials: Token (bearer API token or
// JWT) and, optionally, TenantID sent as X-Tenant-Id (header-only auth in
// demo/dev, or tenant selection for a platform admin).
type Client struct {
	BaseURL   string // orchestrator base URL
	PolicyURL string // model-policy base URL
	Token     string
	TenantID  string
	HTTP      *http.Client
	// StreamRetries bounds Follow's reconnects in a row that bring no new
	// event (default DefaultStreamRetries).
	StreamRetries int
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

// defaultHTTP is a Client's when it has none: outbound's bounds for calls
// that may wait on a model (a non-streamed chat answers when complete),
// through HTTPS_PROXY as http.DefaultClient went.
var defaultHTTP = outbound.ModelClient(outbound.ModelDefaults())

// Do sends a JSON request to base+path and decodes a 2xx JSON answer into
// out; any other answer is the *errs.Error it carries.
func (c *Client) Do(ctx context.Context, method, base, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	c.authorize(req)
	resp, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return answerError(base, resp, data)
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

func (c *Client) authorize(req *http.Request) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.TenantID != "" {
		req.Header.Set("X-Tenant-Id", c.TenantID)
	}
}

// answerError is the *errs.Error of a non-2xx answer from base: the
// contract's envelope, or, without one, the code its status stands for.
func answerError(base string, resp *http.Response, body []byte) *errs.Error {
	return httpx.DecodeErrorFrom(strings.TrimRight(base, "/"), resp.StatusCode, resp.Header, body)
}

// Health is a service's /v1/health body.
type Health struct {
	Status  string `json:"status"`
	Service string `json:"service"`
	Version string `json:"version"`
}

// GetHealth fetches base+path (e.g. /v1/health) without credentials.
func GetHealth(ctx context.Context, hc *http.Client, base, path string) (Health, error) {
	var h Health
	c := &Client{HTTP: hc}
	err := c.Do(ctx, http.MethodGet, base, path, nil, &h)
	if err == nil && h.Status != "ok" {
		err = fmt.Errorf("status %q", h.Status)
	}
	return h, err
}

// ListTenants returns all tenants (platform admin).
func (c *Client) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	var out struct {
		Tenants []store.Tenant `json:"tenants"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/admin/tenants", nil, &out)
	return out.Tenants, err
}

// GetTenant returns one tenant.
func (c *Client) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	var out struct {
		Tenant store.Tenant `json:"tenant"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/admin/tenants/"+url.PathEscape(id), nil, &out)
	return out.Tenant, err
}

// CreateTenant creates a tenant from a tenant_create object (tenant_id, name,
// plan_tier, default_policy_id, entitlements, quotas).
func (c *Client) CreateTenant(ctx context.Context, create map[string]any) (store.Tenant, error) {
	var out struct {
		Tenant store.Tenant `json:"tenant"`
	}
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/admin/tenants", map[string]any{"tenant_create": create}, &out)
	return out.Tenant, err
}

// PatchTenant updates any of name, status, plan_tier, entitlements, quotas.
func (c *Client) PatchTenant(ctx context.Context, id string, patch map[string]any) (store.Tenant, error) {
	var out struct {
		Tenant store.Tenant `json:"tenant"`
	}
	err := c.Do(ctx, http.MethodPatch, c.BaseURL, "/v1/admin/tenants/"+url.PathEscape(id), patch, &out)
	return out.Tenant, err
}

// IssuedToken is a token as returned once by the admin API, with its secret.
type IssuedToken struct {
	TokenID     string     `json:"token_id"`
	Secret      string     `json:"secret"`
	PrincipalID string     `json:"principal_id"`
	Scopes      []string   `json:"scopes"`
	Roles       []string   `json:"roles"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

// TokenRequest is the body of a token issue.
type TokenRequest struct {
	PrincipalID string     `json:"principal_id"`
	Scopes      []string   `json:"scopes,omitempty"`
	Roles       []string   `json:"roles,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// IssueToken issues an API token for a principal of a tenant.
func (c *Client) IssueToken(ctx context.Context, tenantID string, req TokenRequest) (IssuedToken, error) {
	var out struct {
		Token IssuedToken `json:"token"`
	}
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/admin/tenants/"+url.PathEscape(tenantID)+"/tokens", req, &out)
	return out.Token, err
}

// RevokeToken revokes a token.
func (c *Client) RevokeToken(ctx context.Context, tenantID, tokenID string) error {
	return c.Do(ctx, http.MethodDelete, c.BaseURL,
		"/v1/admin/tenants/"+url.PathEscape(tenantID)+"/tokens/"+url.PathEscape(tokenID), nil, nil)
}

// PutAgent creates or replaces an agent in the tenant named by c.TenantID
// (or the caller's own tenant).
func (c *Client) PutAgent(ctx context.Context, agentID string, spec map[string]any) (store.Agent, error) {
	var out struct {
		Agent store.Agent `json:"agent"`
	}
	err := c.Do(ctx, http.MethodPut, c.BaseURL, "/v1/admin/agents/"+url.PathEscape(agentID), map[string]any{"agent": spec}, &out)
	return out.Agent, err
}

// ListAgents lists the tenant's agents.
func (c *Client) ListAgents(ctx context.Context) ([]store.Agent, error) {
	var out struct {
		Agents []store.Agent `json:"agents"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/agents", nil, &out)
	return out.Agents, err
}

// GetAgent returns one agent of the tenant.
func (c *Client) GetAgent(ctx context.Context, agentID string) (store.Agent, error) {
	var out struct {
		Agent store.Agent `json:"agent"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/agents/"+url.PathEscape(agentID), nil, &out)
	return out.Agent, err
}

// RunOption sets part of a run create's body.
type RunOption func(body map[string]any)

// WithTokenStream asks for the run's model output as agentos.model.delta
// events while the model generates (stream.tokens).
func WithTokenStream() RunOption {
	return func(body map[string]any) { body["stream"] = map[string]any{"tokens": true} }
}

// CreateRun starts a run of agentID with a text input; extra adds body
// fields as they are (run_options, tooling, idempotency_key...), then opts
// apply.
func (c *Client) CreateRun(ctx context.Context, agentID, text string, extra map[string]any, opts ...RunOption) (store.Run, error) {
	body := map[string]any{"input": map[string]any{"type": "text", "text": text}}
	for k, v := range extra {
		body[k] = v
	}
	for _, o := range opts {
		o(body)
	}
	var out struct {
		Run store.Run `json:"run"`
	}
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/agents/"+url.PathEscape(agentID)+"/runs", body, &out)
	return out.Run, err
}

// GetRun returns a run.
func (c *Client) GetRun(ctx context.Context, runID string) (store.Run, error) {
	var out struct {
		Run store.Run `json:"run"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/runs/"+url.PathEscape(runID), nil, &out)
	return out.Run, err
}

// RunFilter selects runs for ListRuns (GET /v1/runs query parameters).
type RunFilter struct {
	AgentID, Status, Cursor string
	// ThreadID keeps the runs created on that thread.
	ThreadID string
	Limit    int
}

// ListRuns returns one page of the tenant's runs, newest first, and the
// cursor of the next page ("" on the last).
func (c *Client) ListRuns(ctx context.Context, f RunFilter) ([]store.Run, string, error) {
	q := url.Values{}
	for k, v := range map[string]string{"agent_id": f.AgentID, "status": f.Status, "thread_id": f.ThreadID, "cursor": f.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	path := "/v1/runs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Runs       []store.Run `json:"runs"`
		NextCursor *string     `json:"next_cursor"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, path, nil, &out)
	next := ""
	if out.NextCursor != nil {
		next = *out.NextCursor
	}
	return out.Runs, next, err
}

// CancelRun cancels a run (POST /v1/runs/{run_id}:cancel) and returns it.
func (c *Client) CancelRun(ctx context.Context, runID, reason string) (store.Run, error) {
	var body any // nil: no body
	if reason != "" {
		body = map[string]any{"reason": reason}
	}
	var out struct {
		Run store.Run `json:"run"`
	}
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/runs/"+url.PathEscape(runID)+":cancel", body, &out)
	return out.Run, err
}

// ListEvents returns a run's stored events as JSON (Accept: application/json).
func (c *Client) ListEvents(ctx context.Context, runID string) ([]store.Event, error) {
	var out struct {
		Events []store.Event `json:"events"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/runs/"+url.PathEscape(runID)+"/events", nil, &out)
	return out.Events, err
}

// StreamEvents follows a run's SSE stream from after afterSeq, calling fn
// for each event until the terminal event or an error from fn; a stream
// that breaks off is resumed (see Follow).
func (c *Client) StreamEvents(ctx context.Context, runID string, afterSeq int64, fn func(store.Event) error) error {
	path := "/v1/runs/" + url.PathEscape(runID) + "/events"
	if afterSeq > 0 {
		path += "?after_sequence=" + strconv.FormatInt(afterSeq, 10)
	}
	return c.Follow(ctx, c.BaseURL, path, fn)
}

// DefaultStreamRetries is a Client's StreamRetries when it sets none.
const DefaultStreamRetries = 5

// Follow reads the event stream at base+path (text/event-stream), calling
// fn for each event until the terminal event or an error from fn. A run's
// own stream and a forwarded run's stream through the federation client
// API are both read this way.
//
// A stream that ends or breaks before the terminal event (a restart, a
// replica going away, a server shedding a slow reader) is reopened with
// Last-Event-ID set to the last sequence fn saw, so fn sees every event
// once, in order, without gaps. Reconnects back off (Retry-After when the
// server says one) and give up after StreamRetries attempts in a row that
// brought no new event; an answer that no retry can change (4xx other
// than 429) is returned at once.
func (c *Client) Follow(ctx context.Context, base, path string, fn func(store.Event) error) error {
	last := int64(-1) // no event seen yet: the first request's position
	failures := 0
	for {
		progressed, done, err := c.followOnce(ctx, base, path, &last, fn)
		var cb callbackError
		switch {
		case done:
			return nil
		case errors.As(err, &cb):
			return cb.err
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && !errs.As(err).Code.Retryable():
			return err
		}
		if progressed {
			failures = 0
		}
		failures++
		if failures > c.streamRetries() {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("event stream %s ended %d times in a row before the terminal event: %w", path, failures, err)
		}
		wait := min(100*time.Millisecond<<(failures-1), 2*time.Second)
		if ra := errs.As(err).RetryAfter; err != nil && ra > 0 {
			wait = ra
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) streamRetries() int {
	if c.StreamRetries > 0 {
		return c.StreamRetries
	}
	return DefaultStreamRetries
}

// callbackError carries fn's error out of a stream, never retried.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// followOnce reads one connection of a stream, resuming after *last when
// it is set, and skipping what fn already saw.
func (c *Client) followOnce(ctx context.Context, base, path string, last *int64, fn func(store.Event) error) (progressed, done bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return false, false, callbackError{err}
	}
	req.Header.Set("Accept", "text/event-stream")
	if *last >= 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(*last, 10))
	}
	c.authorize(req)
	resp, err := c.http().Do(req)
	if err != nil {
		return false, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return false, false, answerError(base, resp, data)
	}
	err = ReadSSE(resp.Body, func(f SSEFrame) error {
		if len(f.Data) == 0 {
			return nil
		}
		ev, err := DecodeEventData(f.Data)
		if err != nil {
			return callbackError{err}
		}
		if *last >= 0 && ev.Sequence <= *last {
			return nil // seen before this connection
		}
		if err := fn(ev); err != nil {
			return callbackError{err}
		}
		*last, progressed = ev.Sequence, true
		if store.IsTerminalEvent(ev.Type) {
			done = true
			return errStreamDone
		}
		return nil
	})
	return progressed, done, err
}

// errStreamDone stops ReadSSE after a terminal event.
var errStreamDone = errors.New("stream done")

// DecodeEventData decodes an SSE data field: {"event":{envelope}} or a bare
// envelope (events.DecodeData).
func DecodeEventData(data []byte) (store.Event, error) {
	return events.DecodeData(string(data))
}

// SSEFrame is one server-sent event: its id, event name and data (lines
// joined with \n). Comment lines (": ping") produce no frame.
type SSEFrame struct {
	ID    string
	Event string
	Data  []byte
}

// maxSSEFrame bounds one frame of an event stream the CLI follows.
const maxSSEFrame = 8 << 20

// ReadSSE parses a text/event-stream with events.Reader, calling fn per
// dispatched frame. It returns nil at the end of the stream or when fn
// returns errStreamDone.
func ReadSSE(r io.Reader, fn func(SSEFrame) error) error {
	rd := events.NewReader(r)
	rd.MaxFrame = maxSSEFrame
	for {
		f, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if f.Comment {
			continue
		}
		if err := fn(SSEFrame{ID: f.ID, Event: f.Event, Data: []byte(f.Data)}); err != nil {
			if err == errStreamDone {
				return nil
			}
			return err
		}
	}
}

// PolicyResult is model-policy's policy_result.
type PolicyResult struct {
	RequestID  string           `json:"request_id"`
	Decision   string           `json:"decision"`
	Reasons    []any            `json:"reasons"`
	Redactions []map[string]any `json:"redactions"`
	Content    map[string]any   `json:"content"`
}

// PolicyCheck calls model-policy POST /v1/policy:check with the caller's
// credentials.
func (c *Client) PolicyCheck(ctx context.Context, requestID, text string) (PolicyResult, error) {
	body := map[string]any{"policy_check": map[string]any{
		"request_id": requestID,
		"content":    map[string]any{"type": "text", "text": text},
	}}
	var out struct {
		PolicyResult PolicyResult `json:"policy_result"`
	}
	err := c.Do(ctx, http.MethodPost, c.PolicyURL, "/v1/policy:check", body, &out)
	return out.PolicyResult, err
}

// ListModels calls model-policy GET /v1/models.
func (c *Client) ListModels(ctx context.Context) ([]map[string]any, error) {
	var out struct {
		Models []map[string]any `json:"models"`
	}
	err := c.Do(ctx, http.MethodGet, c.PolicyURL, "/v1/models", nil, &out)
	return out.Models, err
}

// Metrics fetches base/metrics and returns the sum of every sample of each
// metric family (labels ignored), e.g. m["agentos_runs_total"].
func Metrics(ctx context.Context, hc *http.Client, base string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, answerError(base, resp, data)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics sums the samples of each metric name in a Prometheus text
// exposition. Comment and malformed lines are skipped.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		rest := ""
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			name, rest = line[:i], line[j+1:]
		} else if i := strings.IndexAny(line, " \t"); i >= 0 {
			name, rest = line[:i], line[i:]
		} else {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}
