// Package webhook is the webhook ToolPort adapter: a tool a tenant
// registered (store.ToolDef, kind "webhook") is invoked by POSTing the call
// to the tenant's URL, signed with the secret the tenant gave at
// registration.
//
// # Request
//
// Every call is one POST to the tool's url with
//
//	Content-Type: application/json
//	traceparent: <W3C trace context of the run, a new child span>
//	X-AgentOS-Signature: t=<unix seconds>,v1=<hex signature>
//
// and the body
//
//	{"tool_id":"tool.lookup","tool_call_id":"tcall_...","run_id":"run_...",
//	 "agent_id":"agt_...","tenant_id":"tnt_...","input":{...}}
//
// where input has already been validated against the tool's input_schema.
//
// # Verifying the signature
//
// v1 is the lowercase hex HMAC-SHA256, keyed with the shared secret, of the
// timestamp, a dot and the raw request body, byte for byte:
//
//	v1 = hex(HMAC_SHA256(secret, "<t>" + "." + <body>))
//
// A receiver recomputes it over the body exactly as received, compares it
// with a constant-time comparison, and rejects a timestamp too far from its
// own clock (five minutes is usual) so that a captured request cannot be
// replayed later. Verify does all of that for Go receivers.
//
// # Response
//
// A 2xx answer's body must be JSON (at most 1 MiB); it is the tool's
// output. Any other answer is an error: 400, 404, 409 and 422 are
// invalid_request, 401 and 403 forbidden, 408 timeout, 429 rate_limited,
// other 4xx invalid_request, 3xx (redirects are not followed) and 5xx
// dependency_unavailable, each carrying the webhook's message (the
// "message" or "error" member of a JSON body, else the start of the body).
// A transport failure is dependency_unavailable; a call that outlives the
// tool's timeout_ms is timeout.
//
// # Network guard
//
// The client New is given should be builtin.GuardedClient: it refuses, when
// connecting, loopback, private, link-local and cloud-metadata addresses
// unless the operator allowed them with AGENTOS_HTTP_FETCH_ALLOW, so a
// tenant cannot aim a webhook at the node's own network.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
)

// SignatureHeader carries the call's signature.
const SignatureHeader = "X-AgentOS-Signature"

// MaxResponseBytes caps a webhook's answer; a longer one is an error.
const MaxResponseBytes = 1 << 20

// DefaultTimeout applies when the definition sets no timeout_ms.
const DefaultTimeout = 30 * time.Second

// maxMessage caps the part of a webhook's error message that is passed on.
const maxMessage = 300

type tool struct {
	def    store.ToolDef
	client *http.Client
	spec   tools.Spec
}

// New returns the tool def describes. client should come from
// builtin.GuardedClient (nil means a guarded client with an empty
// allowlist); redirects are never followed, whatever client does.
func New(def store.ToolDef, client *http.Client) tools.Tool {
	if client == nil {
		client = builtin.GuardedClient(builtin.HTTPFetchConfig{})
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	timeout := time.Duration(def.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &tool{def: def, client: &c, spec: tools.Spec{
		ToolID:         def.ToolID,
		Name:           def.Name,
		Description:    def.Description,
		InputSchema:    def.InputSchema,
		Idempotent:     def.Idempotent,
		DefaultTimeout: timeout,
	}}
}

func (t *tool) Spec() tools.Spec { return t.spec }

// request is the body POSTed to the webhook.
type request struct {
	ToolID     string          `json:"tool_id"`
	ToolCallID string          `json:"tool_call_id"`
	RunID      string          `json:"run_id"`
	AgentID    string          `json:"agent_id"`
	TenantID   string          `json:"tenant_id"`
	Input      json.RawMessage `json:"input"`
}

func (t *tool) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	id := t.spec.ToolID
	if err := tools.ContextError(ctx, id); err != nil {
		return nil, err
	}
	if err := tools.ValidateInput(t.spec.InputSchema, c.Input); err != nil {
		return nil, err
	}
	input := c.Input
	if trimmed := bytes.TrimSpace(input); len(trimmed) == 0 || string(trimmed) == "null" {
		input = json.RawMessage(`{}`)
	}
	body, err := json.Marshal(request{ToolID: id, ToolCallID: c.ToolCallID, RunID: c.RunID,
		AgentID: c.AgentID, TenantID: c.TenantID, Input: input})
	if err != nil {
		return nil, errs.Wrap(errs.InvalidRequest, err, "input: cannot encode")
	}
	ctx, cancel := context.WithTimeout(ctx, t.spec.DefaultTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.def.URL, bytes.NewReader(body))
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "tool %s: bad webhook url", id)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "AgentOS-Webhook/1")
	req.Header.Set("traceparent", httpx.TraceFrom(ctx).Child().Traceparent())
	req.Header.Set(SignatureHeader, Sign(t.def.Secret, time.Now().Unix(), body))

	resp, err := t.client.Do(req)
	if err != nil {
		return nil, t.transportError(ctx, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, t.transportError(ctx, err)
	}
	if len(raw) > MaxResponseBytes {
		return nil, errs.E(errs.DependencyUnavailable, "tool %s: webhook response exceeds %d bytes", id, MaxResponseBytes).
			WithDetails(map[string]any{"tool_id": id, "status": resp.StatusCode})
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, statusError(id, resp.StatusCode, resp.Header, raw)
	}
	raw = bytes.TrimSpace(raw)
	if !json.Valid(raw) {
		return nil, errs.E(errs.DependencyUnavailable, "tool %s: webhook answered %d with a body that is not JSON", id, resp.StatusCode).
			WithDetails(map[string]any{"tool_id": id, "status": resp.StatusCode})
	}
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return nil, errs.Wrap(errs.DependencyUnavailable, err, "tool %s: webhook answered invalid JSON", id)
	}
	return out.Bytes(), nil
}

// transportError maps a failed request: a done ctx becomes timeout or the
// cancellation, the network guard's refusal keeps its code (forbidden), and
// anything else is dependency_unavailable.
func (t *tool) transportError(ctx context.Context, err error) error {
	if cerr := tools.ContextError(ctx, t.spec.ToolID); cerr != nil {
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
	host := t.def.URL
	if u, perr := url.Parse(t.def.URL); perr == nil {
		host = u.Host
	}
	return errs.Wrap(errs.DependencyUnavailable, err, "tool %s: webhook %s unreachable: %v", t.spec.ToolID, host, reason).
		WithDetails(map[string]any{"tool_id": t.spec.ToolID})
}

// statusError maps a webhook's non-2xx answer to an error carrying its
// message, and its Retry-After (seconds) for the executor's retry of an
// idempotent tool.
func statusError(toolID string, status int, header http.Header, body []byte) error {
	var code errs.Code
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		code = errs.Forbidden
	case status == http.StatusRequestTimeout:
		code = errs.Timeout
	case status == http.StatusTooManyRequests:
		code = errs.RateLimited
	case status >= 400 && status < 500:
		code = errs.InvalidRequest
	default: // 1xx/3xx (not followed) and 5xx
		code = errs.DependencyUnavailable
	}
	msg := remoteMessage(body)
	text := fmt.Sprintf("tool %s: webhook answered %d", toolID, status)
	if msg != "" {
		text += ": " + msg
	}
	e := errs.E(code, "%s", text).WithDetails(map[string]any{"tool_id": toolID, "status": status, "message": msg})
	if secs, err := strconv.Atoi(header.Get("Retry-After")); err == nil && secs >= 0 && secs <= 3600 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	return e
}

// remoteMessage extracts a human message from a webhook's error body: the
// "message" member, the "error" member (a string, or an object with a
// message), else the start of the body as text.
func remoteMessage(body []byte) string {
	var m struct {
		Message string          `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &m) == nil {
		msg = m.Message
		if msg == "" && len(m.Error) > 0 {
			var s string
			var obj struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(m.Error, &s) == nil {
				msg = s
			} else if json.Unmarshal(m.Error, &obj) == nil {
				msg = obj.Message
			}
		}
	}
	if msg == "" {
		msg = string(body)
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
		for len(msg) > 0 && !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "?")
	}
	return msg
}

// Sign returns the X-AgentOS-Signature value of body sent at unix time t:
// "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
func Sign(secret string, t int64, body []byte) string {
	return "t=" + strconv.FormatInt(t, 10) + ",v1=" + hex.EncodeToString(mac(secret, t, body))
}

func mac(secret string, t int64, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(strconv.FormatInt(t, 10)))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// ParseSignature splits an X-AgentOS-Signature value into its timestamp
// and v1 signatures (there may be several, e.g. during a secret rotation).
// Unknown members are ignored.
func ParseSignature(header string) (int64, [][]byte, error) {
	var t int64
	var haveT bool
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return 0, nil, fmt.Errorf("signature: malformed member %q", part)
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 || haveT {
				return 0, nil, fmt.Errorf("signature: bad timestamp %q", v)
			}
			t, haveT = n, true
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return 0, nil, fmt.Errorf("signature: bad v1 value")
			}
			sigs = append(sigs, b)
		}
	}
	if !haveT {
		return 0, nil, errors.New("signature: no timestamp")
	}
	if len(sigs) == 0 {
		return 0, nil, errors.New("signature: no v1 signature")
	}
	return t, sigs, nil
}

// Verify checks header (an X-AgentOS-Signature value) against body and
// secret, and that its timestamp is within tolerance of now. Receivers
// written in Go call it with the raw body; nil means authentic.
func Verify(header, secret string, body []byte, now time.Time, tolerance time.Duration) error {
	t, sigs, err := ParseSignature(header)
	if err != nil {
		return err
	}
	want := mac(secret, t, body)
	ok := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			ok = true
		}
	}
	if !ok {
		return errors.New("signature: does not match")
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("signature: timestamp %d is %s from now, outside the tolerance", t, d.Round(time.Second))
	}
	return nil
}
