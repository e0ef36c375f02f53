package httpx

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/nexixai/agentos/internal/errs"
)

// maxRetryAfterSecs keeps a Retry-After within a time.Duration.
const maxRetryAfterSecs = int(math.MaxInt64 / int64(time.Second))

// DecodeError rebuilds the error a service answered with (a non-2xx status,
// its headers and body), for the clients of AgentOS services: code, message
// and details from the contract's error envelope, or, without one, the code
// from the status (CodeFromStatus) and the message "the server answered HTTP
// <status>". A Retry-After of whole seconds becomes RetryAfter. Details are
// never nil.
func DecodeError(status int, header http.Header, body []byte) *errs.Error {
	return DecodeErrorFrom("the server", status, header, body)
}

// DecodeErrorFrom is DecodeError naming who answered in the message used
// when the body carries no envelope ("<who> answered HTTP <status>").
func DecodeErrorFrom(who string, status int, header http.Header, body []byte) *errs.Error {
	var env Envelope
	e := &errs.Error{}
	if json.Unmarshal(body, &env) == nil && env.Error.Code != "" {
		e.Code, e.Message, e.Details = errs.Code(env.Error.Code), env.Error.Message, env.Error.Details
	} else {
		e.Code, e.Message = CodeFromStatus(status), fmt.Sprintf("%s answered HTTP %d", who, status)
	}
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	if ra := header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 && secs <= maxRetryAfterSecs {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
	}
	return e
}
