// Package errs holds the closed set of error codes of CONTRACT §2 and the
// error type that carries one. Every layer returns these; only the HTTP
// adapter (internal/httpx) maps them to status codes.
package errs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Code is one of the contract's error codes.
type Code string

// The contract's error codes.
const (
	InvalidRequest        Code = "invalid_request"
	Unauthorized          Code = "unauthorized"
	Forbidden             Code = "forbidden"
	PolicyBlocked         Code = "policy_blocked"
	NotFound              Code = "not_found"
	Conflict              Code = "conflict"
	RateLimited           Code = "rate_limited"
	QuotaExceeded         Code = "quota_exceeded"
	DependencyUnavailable Code = "dependency_unavailable"
	// Overloaded: this node is at a node-wide capacity limit (e.g. its
	// event streams); 503 with Retry-After, retryable here or on a replica.
	Overloaded Code = "overloaded"
	Timeout    Code = "timeout"
	Internal   Code = "internal_error"
	// MethodNotAllowed: the path exists but not for this method (405 with
	// an Allow header). Not retryable: the same request fails the same way.
	MethodNotAllowed Code = "method_not_allowed"
	// Canceled: the caller gave up (hung up, or canceled the context)
	// before the work finished. Not in CONTRACT §2 (docs/design.md says
	// why): it is neither a timeout of ours nor a server error, so it is
	// answered 499 as nginx does, never counted as a 5xx, and not
	// retryable (nobody is waiting for the answer).
	Canceled Code = "canceled"
)

// Retryable reports whether the contract marks the code retryable.
func (c Code) Retryable() bool {
	switch c {
	case RateLimited, DependencyUnavailable, Overloaded, Timeout, Internal:
		return true
	}
	return false
}

// Error is an error with a contract code. Message is safe to show to the
// caller; Err (if any) is the internal cause and is only logged.
type Error struct {
	Code       Code
	Message    string
	Details    map[string]any
	RetryAfter time.Duration // for rate_limited and overloaded: becomes the Retry-After header
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, errs.ErrNotFound) match any *Error with that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is checks. They match any *Error with the same code.
var (
	ErrNotFound      = &Error{Code: NotFound}
	ErrConflict      = &Error{Code: Conflict}
	ErrInvalid       = &Error{Code: InvalidRequest}
	ErrForbidden     = &Error{Code: Forbidden}
	ErrUnauthorized  = &Error{Code: Unauthorized}
	ErrQuotaExceeded = &Error{Code: QuotaExceeded}
	ErrRateLimited   = &Error{Code: RateLimited}
	ErrUnavailable   = &Error{Code: DependencyUnavailable}
	ErrOverloaded    = &Error{Code: Overloaded}
)

// E builds an *Error with a formatted message.
func E(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap builds an *Error whose internal cause is err.
func Wrap(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// WithDetails returns e with details set (e is modified and returned).
func (e *Error) WithDetails(d map[string]any) *Error { e.Details = d; return e }

// Field returns an invalid_request error naming the offending field.
func Field(field, format string, args ...any) *Error {
	return &Error{Code: InvalidRequest, Message: field + ": " + fmt.Sprintf(format, args...),
		Details: map[string]any{"field": field}}
}

// CodeOf returns the code of err, or internal_error when err carries none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// As returns err as an *Error: a context error becomes what FromContext
// makes of it, anything else an internal error whose message hides the
// cause.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if e := FromContext(err, "operation"); e != nil {
		return e
	}
	return &Error{Code: Internal, Message: "internal error", Err: err}
}

// FromContext is the one mapping of context errors: an err that is (or
// wraps) context.DeadlineExceeded is a timeout ("<what> timed out"), one
// that is context.Canceled is canceled ("<what> canceled"); both wrap err.
// It returns nil for any other error, so callers write
//
//	if e := errs.FromContext(err, "store operation"); e != nil { return e }
//
// A deadline wins when err says both.
func FromContext(err error, what string) *Error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return Wrap(Timeout, err, "%s timed out", what)
	case errors.Is(err, context.Canceled):
		return Wrap(Canceled, err, "%s canceled", what)
	}
	return nil
}
