package modelport

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/outbound"
)

// HTTPClient is the Port over model-policy's canonical HTTP API
// (/v1/models:invoke, /v1/policy:check, /v1/models).
type HTTPClient struct {
	base      string
	authorize func(req *http.Request, ac auth.Context) error
	hc        *http.Client
}

var _ Port = (*HTTPClient)(nil)

// NewHTTPClient returns a client of the model-policy service at baseURL
// (e.g. http://127.0.0.1:50082). authorize, if non-nil, adds the
// credentials of each request (for example a service token or the demo
// X-Tenant-Id header); httpClient defaults to outbound's client for calls
// waiting on a model (no overall timeout: the caller's context bounds
// every call).
func NewHTTPClient(baseURL string, authorize func(req *http.Request, ac auth.Context) error, httpClient *http.Client) *HTTPClient {
	if httpClient == nil {
		httpClient = outbound.Client(outbound.ModelDefaults(), nil)
	}
	return &HTTPClient{base: strings.TrimRight(baseURL, "/"), authorize: authorize, hc: httpClient}
}

// Chat calls POST /v1/models:invoke with operation chat.
func (c *HTTPClient) Chat(ctx context.Context, ac auth.Context, req ChatRequest) (ChatResponse, error) {
	if req.Operation == "" {
		req.Operation = "chat"
	}
	var out struct {
		Response *ChatResponse `json:"response"`
	}
	if err := c.invoke(ctx, ac, req, &out); err != nil {
		return ChatResponse{}, err
	}
	if out.Response == nil {
		return ChatResponse{}, errs.E(errs.DependencyUnavailable, "model-policy answered without a response object")
	}
	out.Response.Usage.Estimated = out.Response.UsageEstimated
	return *out.Response, nil
}

// Embed calls POST /v1/models:invoke with operation embed.
func (c *HTTPClient) Embed(ctx context.Context, ac auth.Context, req EmbedRequest) (EmbedResponse, error) {
	if req.Operation == "" {
		req.Operation = "embed"
	}
	var out struct {
		Response *EmbedResponse `json:"response"`
	}
	if err := c.invoke(ctx, ac, req, &out); err != nil {
		return EmbedResponse{}, err
	}
	if out.Response == nil {
		return EmbedResponse{}, errs.E(errs.DependencyUnavailable, "model-policy answered without a response object")
	}
	out.Response.Usage.Estimated = out.Response.UsageEstimated
	return *out.Response, nil
}

func (c *HTTPClient) invoke(ctx context.Context, ac auth.Context, req any, out any) error {
	tp := httpx.TraceFrom(ctx).Child()
	body := map[string]any{"auth": ac, "request": req, "traceparent": tp.Traceparent()}
	return c.do(ctx, ac, http.MethodPost, "/v1/models:invoke", body, tp, out)
}

// PolicyCheck calls POST /v1/policy:check.
func (c *HTTPClient) PolicyCheck(ctx context.Context, ac auth.Context, req PolicyCheckRequest) (PolicyCheckResult, error) {
	tp := httpx.TraceFrom(ctx).Child()
	var out struct {
		PolicyResult *PolicyCheckResult `json:"policy_result"`
	}
	body := map[string]any{"auth": ac, "policy_check": req}
	if err := c.do(ctx, ac, http.MethodPost, "/v1/policy:check", body, tp, &out); err != nil {
		return PolicyCheckResult{}, err
	}
	if out.PolicyResult == nil {
		return PolicyCheckResult{}, errs.E(errs.DependencyUnavailable, "model-policy answered without a policy_result object")
	}
	return *out.PolicyResult, nil
}

// ListModels calls GET /v1/models.
func (c *HTTPClient) ListModels(ctx context.Context, ac auth.Context) ([]Model, error) {
	var out struct {
		Models []Model `json:"models"`
	}
	if err := c.do(ctx, ac, http.MethodGet, "/v1/models", nil, httpx.TraceFrom(ctx).Child(), &out); err != nil {
		return nil, err
	}
	if out.Models == nil {
		out.Models = []Model{}
	}
	return out.Models, nil
}

func (c *HTTPClient) do(ctx context.Context, ac auth.Context, method, path string, body any, tp httpx.Trace, out any) error {
	req, err := c.newRequest(ctx, ac, method, path, body, tp)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportError(ctx, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return transportError(ctx, err)
	}
	if resp.StatusCode/100 != 2 {
		return httpx.DecodeErrorFrom("model-policy", resp.StatusCode, resp.Header, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "model-policy sent a malformed response")
	}
	return nil
}

// newRequest builds a request with its body, trace, correlation and
// credentials.
func (c *HTTPClient) newRequest(ctx context.Context, ac auth.Context, method, path string, body any, tp httpx.Trace) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "encode model-policy request")
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "build model-policy request")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("traceparent", tp.Traceparent())
	if corr := httpx.CorrelationID(ctx); corr != "" {
		req.Header.Set("X-Correlation-Id", corr)
	}
	if c.authorize != nil {
		if err := c.authorize(req, ac); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "authorize model-policy request")
		}
	}
	return req, nil
}

// transportError maps a failed exchange (outbound.Error): the context's
// deadline is timeout, its cancellation canceled, anything else (refused,
// reset, DNS, a transport bound) dependency_unavailable.
func transportError(ctx context.Context, err error) error {
	return outbound.Error(ctx, "model-policy", err)
}
