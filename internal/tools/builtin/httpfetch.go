package builtin

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nexixai/agentos/internal/artifact"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
)

// HTTPFetchID is the id of the HTTP fetch tool.
const HTTPFetchID = "tool.http.fetch"

// Defaults of HTTPFetchConfig.
const (
	DefaultFetchMaxBytes     = 1 << 20
	DefaultFetchTimeout      = 10 * time.Second
	DefaultFetchMaxRedirects = 3
)

// Input limits of tool.http.fetch.
const (
	maxFetchURLLen  = 8192
	maxFetchHeaders = 50
)

// HTTPFetchConfig configures tool.http.fetch.
type HTTPFetchConfig struct {
	// MaxBytes caps the response body returned; longer bodies are cut and
	// flagged truncated. It also caps the request body. Default 1 MiB.
	MaxBytes int64
	// Timeout bounds one whole fetch, redirects included. Default 10 s.
	Timeout time.Duration
	// MaxRedirects is how many redirects are followed; one more is an
	// error. 0 means the default, 3; negative means none are followed.
	MaxRedirects int
	// Allow lists the hosts, IPs and CIDRs the SSRF guard lets through
	// (ParseAllow of AGENTOS_HTTP_FETCH_ALLOW). Default: none.
	Allow []AllowRule
	// Resolver resolves hostnames. Default net.DefaultResolver.
	Resolver Resolver
	// Artifacts, if set, keeps bodies longer than ArtifactThreshold: the
	// whole body (up to Artifacts.MaxBytes) is stored as an artifact of
	// the run and the output names it ("artifact") with an empty "body",
	// instead of carrying a body cut at MaxBytes. Nil: bodies are cut.
	Artifacts ArtifactSaver
	// ArtifactThreshold is the body length above which a body becomes an
	// artifact; default (0) MaxBytes, so only bodies that would have been
	// cut are stored. The inline body never exceeds MaxBytes either way.
	ArtifactThreshold int64
}

// ArtifactSaver stores a tool's large output (*artifact.Service).
type ArtifactSaver interface {
	Save(ctx context.Context, p artifact.SaveParams) (store.Artifact, error)
	MaxBytes() int64
}

func (c HTTPFetchConfig) withDefaults() HTTPFetchConfig {
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultFetchMaxBytes
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultFetchTimeout
	}
	switch {
	case c.MaxRedirects == 0:
		c.MaxRedirects = DefaultFetchMaxRedirects
	case c.MaxRedirects < 0:
		c.MaxRedirects = 0
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.ArtifactThreshold <= 0 {
		c.ArtifactThreshold = c.MaxBytes
	}
	return c
}

var httpFetchSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "url":     {"type": "string", "minLength": 1, "maxLength": 8192, "description": "http or https URL to fetch."},
    "method":  {"type": "string", "description": "GET (default) or POST."},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Request headers."},
    "body":    {"type": "string", "description": "Request body (POST only)."}
  },
  "required": ["url"]
}`)

// returnedHeaders are the response headers the tool hands back.
var returnedHeaders = []string{"Content-Type", "Content-Length", "Content-Language", "Last-Modified",
	"ETag", "Cache-Control", "Location", "Retry-After", "Date"}

// forbiddenRequestHeaders are managed by the transport and cannot be set.
var forbiddenRequestHeaders = map[string]bool{"Host": true, "Connection": true, "Content-Length": true,
	"Transfer-Encoding": true, "Te": true, "Trailer": true, "Upgrade": true, "Keep-Alive": true,
	"Proxy-Connection": true, "Proxy-Authorization": true}

type httpFetch struct {
	cfg    HTTPFetchConfig
	client *http.Client
}

// HTTPFetch returns tool.http.fetch: {"url", "method"? (GET|POST),
// "headers"? {name: value}, "body"? string} → {"status", "headers" (a few),
// "body" (text, cut at MaxBytes), "truncated", "final_url"}.
//
// Its SSRF guard resolves every host itself and refuses, at connect time
// and again for every redirect, loopback, private, link-local (cloud
// metadata included), unspecified, multicast, CGNAT and reserved
// addresses (also in IPv4-mapped, NAT64 and 6to4 form) and names such as
// localhost and metadata.google.internal, unless cfg.Allow permits them.
// A refusal is forbidden naming the address. No proxy is used.
func HTTPFetch(cfg HTTPFetchConfig) tools.Tool {
	client := GuardedClient(cfg) // before withDefaults: it applies them itself, once
	return &httpFetch{cfg: cfg.withDefaults(), client: client}
}

// GuardedClient returns an HTTP client whose every connection goes through
// the SSRF guard of tool.http.fetch: it resolves hosts itself and refuses,
// at connect time (so DNS rebinding cannot slip past) and for every
// redirect, the addresses and names HTTPFetch refuses, unless cfg.Allow
// permits them; a refusal is a forbidden *errs.Error naming the address.
// It follows at most cfg.MaxRedirects redirects, to http and https only,
// and uses no proxy. cfg.Timeout bounds connecting, TLS handshakes and
// the wait for response headers; callers bound whole requests with their
// context. Other tools that call URLs a tenant chose
// (webhook tools) use it so that one allowlist, AGENTOS_HTTP_FETCH_ALLOW,
// governs them all.
func GuardedClient(cfg HTTPFetchConfig) *http.Client {
	cfg = cfg.withDefaults()
	// outbound's transport (no proxy: a proxy would connect on our behalf,
	// past the guard), dialing through the guard; every phase is bounded
	// by the fetch's own timeout, as the whole fetch is.
	g := &guard{allow: cfg.Allow, resolver: cfg.Resolver, dialer: net.Dialer{Timeout: cfg.Timeout}}
	tr := outbound.Transport(outbound.Timeouts{Dial: cfg.Timeout, TLSHandshake: cfg.Timeout,
		ResponseHeader: cfg.Timeout, IdleConn: 30 * time.Second}, &tls.Config{MinVersion: tls.VersionTLS12})
	tr.DialContext = g.dialContext
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 16, 2
	tr.MaxResponseHeaderBytes = 64 << 10
	maxRedirects := cfg.MaxRedirects
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return errs.E(errs.InvalidRequest, "url: stopped after %d redirects", maxRedirects).
					WithDetails(map[string]any{"field": "url", "max_redirects": maxRedirects})
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return errs.E(errs.Forbidden, "url: refusing to follow a redirect to scheme %q", req.URL.Scheme).
					WithDetails(map[string]any{"field": "url"})
			}
			return nil
		},
	}
}

func (h *httpFetch) Spec() tools.Spec {
	return tools.Spec{
		ToolID: HTTPFetchID,
		Name:   "http_fetch",
		Description: fmt.Sprintf("Fetches a public http(s) URL with GET or POST and returns the status, a few headers and up to %d bytes of the body as text. "+
			"Private, loopback and link-local addresses are refused.", h.cfg.MaxBytes),
		InputSchema:    httpFetchSchema,
		Idempotent:     false, // POST may have effects; treat every fetch conservatively
		DefaultTimeout: h.cfg.Timeout,
	}
}

type fetchInput struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    *string           `json:"body"`
}

type fetchOutput struct {
	Status    int               `json:"status"`
	Headers   map[string]string `json:"headers"`
	Body      string            `json:"body"`
	Truncated bool              `json:"truncated"`
	FinalURL  string            `json:"final_url"`
	// Artifact names the stored body when it was longer than the artifact
	// threshold (Body is then empty; Truncated says the artifact itself
	// was cut at the artifact size limit).
	Artifact *fetchArtifact `json:"artifact,omitempty"`
	// ArtifactError says why a long body could not be stored (quota
	// exceeded, store down): Body then is the body cut at MaxBytes.
	ArtifactError *fetchArtifactError `json:"artifact_error,omitempty"`
}

type fetchArtifactError struct {
	Code    errs.Code `json:"code"`
	Message string    `json:"message"`
}

// fetchArtifact is the output's reference to a stored body.
type fetchArtifact struct {
	ArtifactID  string `json:"artifact_id"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	// URL is where the run's owner downloads it (GET, tenant-checked).
	URL string `json:"url"`
}

func (h *httpFetch) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	if err := tools.ContextError(ctx, HTTPFetchID); err != nil {
		return nil, err
	}
	var in fetchInput
	if err := tools.DecodeInput(httpFetchSchema, c.Input, &in); err != nil {
		return nil, err
	}
	req, err := h.newRequest(in)
	if err != nil {
		return nil, err
	}
	// The run's trace continues into the fetched service (CONTRACT §2).
	req.Header.Set("traceparent", httpx.TraceFrom(ctx).Child().Traceparent())
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	resp, err := h.client.Do(req.WithContext(ctx))
	if err != nil {
		return nil, fetchError(ctx, in.URL, err)
	}
	defer resp.Body.Close()

	out := fetchOutput{Status: resp.StatusCode, Headers: map[string]string{}, FinalURL: resp.Request.URL.String()}
	for _, name := range returnedHeaders {
		if v := resp.Header.Get(name); v != "" {
			out.Headers[name] = v
		}
	}
	inline := h.cfg.MaxBytes
	if h.cfg.Artifacts != nil && c.RunID != "" {
		// Read up to the threshold; a longer body goes to the artifact
		// store whole (what was read, then the rest of the stream).
		head, err := io.ReadAll(io.LimitReader(resp.Body, h.cfg.ArtifactThreshold+1))
		if err != nil {
			return nil, fetchError(ctx, in.URL, err)
		}
		if int64(len(head)) > h.cfg.ArtifactThreshold {
			stored, err := h.storeBody(ctx, c, resp, head)
			if err != nil {
				if ctx.Err() != nil {
					return nil, fetchError(ctx, in.URL, err)
				}
				var e *errs.Error
				if !errors.As(err, &e) || e.Code == errs.Internal {
					e = errs.E(errs.Internal, "the body could not be stored as an artifact")
				}
				out.ArtifactError = &fetchArtifactError{Code: e.Code, Message: e.Message}
				return h.inlineOutput(out, head)
			}
			out.Artifact, out.Truncated = stored.ref, stored.truncated
			return marshal(HTTPFetchID, out)
		}
		return h.inlineOutput(out, head)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, inline+1))
	if err != nil {
		return nil, fetchError(ctx, in.URL, err)
	}
	return h.inlineOutput(out, body)
}

// inlineOutput puts body in out, cut at MaxBytes (and flagged truncated).
func (h *httpFetch) inlineOutput(out fetchOutput, body []byte) (json.RawMessage, error) {
	if int64(len(body)) > h.cfg.MaxBytes {
		body = body[:h.cfg.MaxBytes]
		out.Truncated = true
		// Drop a character the cut split in two.
		for i := 0; i < utf8.UTFMax && len(body) > 0 && !utf8.Valid(body); i++ {
			body = body[:len(body)-1]
		}
	}
	out.Body = strings.ToValidUTF8(string(body), "\uFFFD")
	return marshal(HTTPFetchID, out)
}

type storedBody struct {
	ref       *fetchArtifact
	truncated bool
}

// storeBody streams head and the rest of resp's body, up to the artifact
// size limit, to the artifact store.
func (h *httpFetch) storeBody(ctx context.Context, c tools.Call, resp *http.Response, head []byte) (storedBody, error) {
	max := h.cfg.Artifacts.MaxBytes()
	body := io.LimitReader(io.MultiReader(bytes.NewReader(head), resp.Body), max)
	a, err := h.cfg.Artifacts.Save(ctx, artifact.SaveParams{TenantID: c.TenantID, RunID: c.RunID, StepID: c.StepID,
		ToolCallID: c.ToolCallID, PrincipalID: c.Auth.Principal.PrincipalID, Name: fetchName(resp.Request.URL),
		ContentType: resp.Header.Get("Content-Type"), Body: body})
	if err != nil {
		return storedBody{}, err
	}
	// Cut at the limit when the body goes on past it.
	var one [1]byte
	n, _ := io.ReadFull(resp.Body, one[:])
	return storedBody{truncated: a.Size == max && n == 1, ref: &fetchArtifact{ArtifactID: a.ArtifactID, Name: a.Name,
		ContentType: a.ContentType, Size: a.Size, SHA256: a.SHA256, URL: "/v1/artifacts/" + a.ArtifactID + "/content"}}, nil
}

// fetchName is a download name for a fetched body: the URL path's last
// segment when it is a plain file name, else "http-fetch-body".
func fetchName(u *url.URL) string {
	name := path.Base(u.Path)
	if name == "." || name == "/" || len(name) > 200 {
		return "http-fetch-body"
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)) {
			return "http-fetch-body"
		}
	}
	return name
}

// newRequest validates the input and builds the request (without context).
func (h *httpFetch) newRequest(in fetchInput) (*http.Request, error) {
	u, err := url.Parse(strings.TrimSpace(in.URL))
	if err != nil {
		return nil, errs.Field("url", "is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errs.Field("url", "must be an http or https URL")
	}
	if u.Hostname() == "" {
		return nil, errs.Field("url", "has no host")
	}
	if len(u.String()) > maxFetchURLLen {
		return nil, errs.Field("url", "is longer than %d characters", maxFetchURLLen)
	}
	method := strings.ToUpper(strings.TrimSpace(in.Method))
	switch method {
	case "":
		method = http.MethodGet
	case http.MethodGet, http.MethodPost:
	default:
		return nil, errs.Field("method", "must be GET or POST, got %q", in.Method)
	}
	var body io.Reader
	if in.Body != nil {
		if method != http.MethodPost {
			return nil, errs.Field("body", "is only allowed with POST")
		}
		if int64(len(*in.Body)) > h.cfg.MaxBytes {
			return nil, errs.Field("body", "is larger than %d bytes", h.cfg.MaxBytes)
		}
		body = strings.NewReader(*in.Body)
	}
	if len(in.Headers) > maxFetchHeaders {
		return nil, errs.Field("headers", "has more than %d entries", maxFetchHeaders)
	}
	req, err := http.NewRequest(method, u.String(), body)
	if err != nil {
		return nil, errs.Field("url", "is not a valid URL")
	}
	req.Header.Set("User-Agent", "agentos-http-fetch/1")
	for name, value := range in.Headers {
		field := "headers." + name
		if !validHeaderName(name) {
			return nil, errs.Field(field, "is not a valid header name")
		}
		canon := http.CanonicalHeaderKey(name)
		if forbiddenRequestHeaders[canon] {
			return nil, errs.Field(field, "cannot be set")
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, errs.Field(field, "must not contain CR, LF or NUL")
		}
		req.Header.Set(canon, value)
	}
	if in.Body != nil && req.Header.Get("Content-Type") == "" {
		if json.Valid([]byte(*in.Body)) {
			req.Header.Set("Content-Type", "application/json")
		} else {
			req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		}
	}
	return req, nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// fetchError maps a failed fetch: a done ctx becomes timeout (or the
// cancellation), guard and redirect errors keep their code, and network
// failures are dependency_unavailable.
func fetchError(ctx context.Context, rawURL string, err error) error {
	if cerr := tools.ContextError(ctx, HTTPFetchID); cerr != nil {
		return cerr
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return e
	}
	reason := err
	var ue *url.Error
	if errors.As(err, &ue) {
		reason = ue.Err
	}
	host := rawURL
	if u, perr := url.Parse(rawURL); perr == nil {
		host = u.Host
	}
	return errs.Wrap(errs.DependencyUnavailable, err, "url: request to %s failed: %v", host, reason)
}
