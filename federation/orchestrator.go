package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
)

// TokenMinter mints a short-lived credential carrying an Auth Context that
// the node's other services trust (auth.NodeSigner satisfies it).
type TokenMinter interface {
	Mint(ac auth.Context, audience string, ttl time.Duration) (string, error)
}

// OrchestratorAudience is the audience of tokens minted for the orchestrator.
const OrchestratorAudience = "agent-orchestrator"

// Orchestrator is the HTTP client of this node's agent orchestrator
// (CONTRACT §4), acting as a re-derived tenant principal.
type Orchestrator struct {
	// BaseURL is AGENTOS_ORCHESTRATOR_URL.
	BaseURL string
	// Minter signs the per-call credential.
	Minter TokenMinter
	// HTTP is the client; default outbound.Client with outbound's default
	// bounds (internal/node passes one built from the node's
	// configuration). Streams must not have an overall client timeout.
	HTTP *http.Client
}

// CallMeta is what a call carries besides the Auth Context.
type CallMeta struct {
	Traceparent   string
	CorrelationID string
}

// defaultOrchestratorClient is shared by Orchestrators without HTTP, so
// they share its idle connections.
var defaultOrchestratorClient = outbound.Client(outbound.Timeouts{}, nil)

func (o *Orchestrator) client() *http.Client {
	if o.HTTP != nil {
		return o.HTTP
	}
	return defaultOrchestratorClient
}

func (o *Orchestrator) request(ctx context.Context, ac auth.Context, method, path string, body []byte, meta CallMeta) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(o.BaseURL, "/")+path, rd)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "bad orchestrator request")
	}
	tok, err := o.Minter.Mint(ac, OrchestratorAudience, 5*time.Minute)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "cannot mint orchestrator credential")
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if meta.Traceparent != "" {
		req.Header.Set("traceparent", meta.Traceparent)
	}
	if meta.CorrelationID != "" {
		req.Header.Set("X-Correlation-Id", meta.CorrelationID)
	}
	return req, nil
}

func (o *Orchestrator) do(req *http.Request) (*http.Response, error) {
	resp, err := o.client().Do(req)
	if err != nil {
		return nil, outbound.Error(req.Context(), "agent orchestrator", err)
	}
	return resp, nil
}

// CreateRun creates a run of agentID (body is the CONTRACT §4 create body)
// as ac. replayed reports an idempotent replay. Orchestrator errors keep
// their contract code.
func (o *Orchestrator) CreateRun(ctx context.Context, ac auth.Context, agentID string, body []byte, idemKey string, meta CallMeta) (run store.Run, replayed bool, err error) {
	req, err := o.request(ctx, ac, http.MethodPost, "/v1/agents/"+url.PathEscape(agentID)+"/runs", body, meta)
	if err != nil {
		return store.Run{}, false, err
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := o.do(req)
	if err != nil {
		return store.Run{}, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return store.Run{}, false, remoteError(resp, "agent orchestrator")
	}
	var out struct {
		Run store.Run `json:"run"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&out); err != nil || out.Run.RunID == "" {
		return store.Run{}, false, errs.Wrap(errs.DependencyUnavailable, err, "agent orchestrator sent an unreadable run")
	}
	return out.Run, resp.Header.Get("Idempotent-Replayed") == "true" || resp.StatusCode == http.StatusOK, nil
}

// OpenEvents opens the run's event stream after sequence after. accept is
// text/event-stream or application/json. The caller closes the body.
func (o *Orchestrator) OpenEvents(ctx context.Context, ac auth.Context, runID string, after int64, accept string, meta CallMeta) (io.ReadCloser, error) {
	path := "/v1/runs/" + url.PathEscape(runID) + "/events?after_sequence=" + strconv.FormatInt(after, 10)
	req, err := o.request(ctx, ac, http.MethodGet, path, nil, meta)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := o.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, remoteError(resp, "agent orchestrator")
	}
	return resp.Body, nil
}

// Ping checks the orchestrator's liveness endpoint.
func (o *Orchestrator) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(o.BaseURL, "/")+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := o.client().Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errs.E(errs.DependencyUnavailable, "agent orchestrator /healthz answered %d", resp.StatusCode)
	}
	return nil
}
