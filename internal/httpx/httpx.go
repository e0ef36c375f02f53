// Package httpx is the HTTP adapter shared by every AgentOS service: the
// contract's error envelope and code→status table (and, for clients,
// DecodeError to rebuild an error from an answer), correlation and request
// ids, W3C traceparent continuation, body size and time limits, JSON
// decoding whose errors name the field, 405 with Allow, panic recovery and
// JSON access logs.
package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/nexixai/agentos/internal/errs"
)

// MaxBodyBytes is the default request body limit (CONTRACT §2).
const MaxBodyBytes = 1 << 20

// statusByCode is the one table mapping error codes to HTTP statuses.
var statusByCode = map[errs.Code]int{
	errs.InvalidRequest:        http.StatusBadRequest,
	errs.Unauthorized:          http.StatusUnauthorized,
	errs.Forbidden:             http.StatusForbidden,
	errs.PolicyBlocked:         http.StatusForbidden,
	errs.NotFound:              http.StatusNotFound,
	errs.Conflict:              http.StatusConflict,
	errs.RateLimited:           http.StatusTooManyRequests,
	errs.QuotaExceeded:         http.StatusTooManyRequests,
	errs.DependencyUnavailable: http.StatusServiceUnavailable,
	errs.Overloaded:            http.StatusServiceUnavailable,
	errs.Timeout:               http.StatusGatewayTimeout,
	errs.Internal:              http.StatusInternalServerError,
	errs.MethodNotAllowed:      http.StatusMethodNotAllowed,
	errs.Canceled:              StatusClientClosedRequest,
}

// StatusClientClosedRequest is nginx's 499 "client closed request": the
// status of a request whose caller hung up before it was answered. It is
// rarely seen by anyone (the caller is gone); it exists so that access
// logs and metrics count such requests apart, not as 5xx.
const StatusClientClosedRequest = 499

// openAITypeByCode maps our codes to the error "type" vocabulary of the
// OpenAI API, so code written against the official SDKs (err.type) works
// on every service. One table, like statusByCode.
var openAITypeByCode = map[errs.Code]string{
	errs.InvalidRequest:        "invalid_request_error",
	errs.MethodNotAllowed:      "invalid_request_error",
	errs.Conflict:              "invalid_request_error",
	errs.Unauthorized:          "authentication_error",
	errs.Forbidden:             "permission_error",
	errs.PolicyBlocked:         "permission_error",
	errs.NotFound:              "not_found_error",
	errs.RateLimited:           "rate_limit_error",
	errs.QuotaExceeded:         "insufficient_quota",
	errs.DependencyUnavailable: "server_error",
	errs.Overloaded:            "server_error",
	errs.Timeout:               "server_error",
	errs.Internal:              "server_error",
	errs.Canceled:              "invalid_request_error",
}

// OpenAIType returns the OpenAI error type for a code.
func OpenAIType(c errs.Code) string {
	if t, ok := openAITypeByCode[c]; ok {
		return t
	}
	return "server_error"
}

// StatusOf returns the HTTP status for an error code.
func StatusOf(c errs.Code) int {
	if s, ok := statusByCode[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// CodeFromStatus rebuilds a code from a status when a peer sent no envelope.
func CodeFromStatus(status int) errs.Code {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return errs.InvalidRequest
	case http.StatusUnauthorized:
		return errs.Unauthorized
	case http.StatusForbidden:
		return errs.Forbidden
	case http.StatusNotFound:
		return errs.NotFound
	case http.StatusConflict:
		return errs.Conflict
	case http.StatusTooManyRequests:
		return errs.RateLimited
	case http.StatusGatewayTimeout:
		return errs.Timeout
	case StatusClientClosedRequest:
		return errs.Canceled
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return errs.DependencyUnavailable
	}
	return errs.Internal
}

// ErrorBody is the inner object of the error envelope.
type ErrorBody struct {
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	Retryable bool           `json:"retryable"`
	Details   map[string]any `json:"details"`
	// Type and Param are OpenAI's names, served only on the OpenAI-compatible
	// surface (OpenAISurface) so SDK code reading err.type / err.param gets
	// them: Type from the code, Param the field at fault (details.field) or
	// null. Elsewhere they are left out: the original API's published error
	// object (../shared/seed) allows no other properties.
	Type  string  `json:"type,omitempty"`
	Param *string `json:"param,omitempty"`

	openAI bool
}

// WithOpenAI is b with OpenAI's type and param filled in.
func (b ErrorBody) WithOpenAI() ErrorBody {
	b.openAI = true
	b.Type = OpenAIType(errs.Code(b.Code))
	b.Param = nil
	if f, ok := b.Details["field"].(string); ok && f != "" {
		b.Param = &f
	}
	return b
}

// MarshalJSON writes type and param (param null when no field is at
// fault, as OpenAI does) only for a body made WithOpenAI.
func (b ErrorBody) MarshalJSON() ([]byte, error) {
	type plain struct {
		Code      string         `json:"code"`
		Message   string         `json:"message"`
		Retryable bool           `json:"retryable"`
		Details   map[string]any `json:"details"`
	}
	p := plain{Code: b.Code, Message: b.Message, Retryable: b.Retryable, Details: b.Details}
	if !b.openAI {
		return json.Marshal(p)
	}
	return json.Marshal(struct {
		plain
		Type  string  `json:"type"`
		Param *string `json:"param"`
	}{p, b.Type, b.Param})
}

// OpenAISurface says whether path is one of the OpenAI-compatible API's
// (its base URL /openai/v1, and the two OpenAI paths model-policy has
// always served under /v1), whose errors carry OpenAI's type and param.
func OpenAISurface(path string) bool {
	return strings.HasPrefix(path, "/openai/") || path == "/v1/chat/completions" || path == "/v1/embeddings"
}

// Envelope is the contract's error envelope.
type Envelope struct {
	Error         ErrorBody `json:"error"`
	CorrelationID string    `json:"correlation_id"`
}

// BodyOf renders err as the envelope's inner object; internal errors hide
// their cause.
func BodyOf(err error) ErrorBody {
	e := errs.As(err)
	msg := e.Message
	if e.Code == errs.Internal && msg == "" {
		msg = "internal error"
	}
	d := e.Details
	if d == nil {
		d = map[string]any{}
	}
	return ErrorBody{Code: string(e.Code), Message: msg, Retryable: e.Code.Retryable(), Details: d}
}

// WriteError writes err as the contract's error envelope. Internal errors
// are logged in full; the caller sees only "internal error". An error
// that stems from a cancellation while the caller has hung up (the
// request's context is canceled only then) is answered canceled, 499,
// whatever code a layer on the way gave it: the failure is the caller's
// leaving, not ours.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := errs.As(err)
	if e.Code != errs.Canceled && r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		e = errs.Wrap(errs.Canceled, err, "request canceled by the caller")
		err = e
	}
	status := StatusOf(e.Code)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		status = http.StatusRequestEntityTooLarge
	}
	if e.Code == errs.InvalidRequest && errors.Is(err, os.ErrDeadlineExceeded) {
		// The body did not arrive within the body deadline (BodyDeadline).
		status = http.StatusRequestTimeout
		w.Header().Set("Connection", "close")
	}
	if e.Code == errs.Internal {
		slog.ErrorContext(r.Context(), "internal error", "err", err, "path", r.URL.Path,
			"correlation_id", CorrelationID(r.Context()))
	}
	if e.Code == errs.RateLimited || e.Code == errs.Overloaded {
		secs := int(e.RetryAfter.Seconds() + 0.999)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	body := BodyOf(err)
	if OpenAISurface(r.URL.Path) {
		body = body.WithOpenAI()
	}
	writeJSON(w, status, Envelope{Error: body, CorrelationID: CorrelationID(r.Context())})
}

// JSON writes body with status, adding "correlation_id" to it.
func JSON(w http.ResponseWriter, r *http.Request, status int, body map[string]any) {
	if body == nil {
		body = map[string]any{}
	}
	body["correlation_id"] = CorrelationID(r.Context())
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away; nothing to do
}

// HandlerFunc is a handler that returns an error instead of writing one.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// H adapts a HandlerFunc: a returned error becomes the error envelope.
func H(fn HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			WriteError(w, r, err)
		}
	})
}

// Decode reads r's JSON body into dst. Unknown fields are ignored (CONTRACT
// §2); an empty body, malformed JSON, wrong types and oversized bodies are
// invalid_request errors naming the field or offset.
func Decode(r *http.Request, dst any) error {
	body, err := ReadBody(r)
	if err != nil {
		return err
	}
	return DecodeBytes(body, dst)
}

// ReadBody reads r's body; a body over the limit (see LimitBody) is an
// invalid_request error that becomes 413, and one that does not arrive
// within the body deadline (see BodyDeadline) one that becomes 408.
func ReadBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &errs.Error{Code: errs.InvalidRequest, Err: err,
				Message: fmt.Sprintf("body: request body exceeds %d bytes", mbe.Limit),
				Details: map[string]any{"field": "body", "limit_bytes": mbe.Limit}}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &errs.Error{Code: errs.InvalidRequest, Err: err,
				Message: "body: request body not received in time (AGENTOS_HTTP_BODY_TIMEOUT)",
				Details: map[string]any{"field": "body"}}
		}
		return nil, errs.Field("body", "cannot read request body: %v", err)
	}
	return body, nil
}

// JSONFieldPath turns encoding/json's path to a value ("tools.0.name", as
// go1.27's decoder reports it) into the form our errors name fields in
// ("tools[0].name").
func JSONFieldPath(path string) string {
	if path == "" {
		return ""
	}
	segs := strings.Split(path, ".")
	var b strings.Builder
	for i, seg := range segs {
		if seg != "" && strings.Trim(seg, "0123456789") == "" && i > 0 {
			b.WriteString("[" + seg + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return b.String()
}

// DecodeBytes is Decode on a byte slice.
func DecodeBytes(body []byte, dst any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return errs.Field("body", "request body is empty; a JSON object is required")
	}
	if err := json.Unmarshal(body, dst); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			field := JSONFieldPath(te.Field)
			if field == "" {
				field = "body"
			}
			return errs.Field(field, "must be %s, got %s", jsonKind(te.Type.Kind().String()), te.Value)
		case errors.As(err, &se):
			return errs.Field("body", "malformed JSON at offset %d: %v", se.Offset, se)
		default:
			return errs.Field("body", "malformed JSON: %v", err)
		}
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64", "int32", "uint", "uint64", "float64", "float32":
		return "a number"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "a " + goKind
}
