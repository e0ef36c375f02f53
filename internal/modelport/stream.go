package modelport

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/httpx"
)

// Streamer is the optional streaming side of a Port: ChatStream is Chat
// with the answer's content passed to onDelta as it is generated, under
// the same governance (model-policy redacts streamed content before it
// leaves). The fragments add up to the response's message content, or to
// a prefix of it (see model-policy's streamGuard); the response is
// authoritative. An error from onDelta ends the call with that error.
type Streamer interface {
	ChatStream(ctx context.Context, ac auth.Context, req ChatRequest, onDelta func(Delta) error) (ChatResponse, error)
}

// Delta is one streamed fragment of a chat answer's content.
type Delta struct {
	Content string `json:"content"`
}

var _ Streamer = (*HTTPClient)(nil)

// ChatStream calls POST /v1/models:invoke with request.stream: a
// text/event-stream of "delta" events, then a "response" (or an "error")
// event. An error answered before the stream started keeps its code, as
// with Chat.
func (c *HTTPClient) ChatStream(ctx context.Context, ac auth.Context, req ChatRequest, onDelta func(Delta) error) (ChatResponse, error) {
	if req.Operation == "" {
		req.Operation = "chat"
	}
	tp := httpx.TraceFrom(ctx).Child()
	body := map[string]any{"auth": ac, "request": streamRequest{ChatRequest: req, Stream: true}, "traceparent": tp.Traceparent()}
	hreq, err := c.newRequest(ctx, ac, http.MethodPost, "/v1/models:invoke", body, tp)
	if err != nil {
		return ChatResponse{}, err
	}
	hreq.Header.Set("Accept", "text/event-stream")
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return ChatResponse{}, transportError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return ChatResponse{}, httpx.DecodeErrorFrom("model-policy", resp.StatusCode, resp.Header, raw)
	}
	var out *ChatResponse
	var cbErr error
	err = events.ReadSSE(resp.Body, func(f events.Frame) error {
		switch f.Event {
		case "delta":
			var d struct {
				Delta Delta `json:"delta"`
			}
			if err := json.Unmarshal([]byte(f.Data), &d); err != nil {
				return errs.Wrap(errs.DependencyUnavailable, err, "model-policy sent a malformed delta")
			}
			if cbErr = onDelta(d.Delta); cbErr != nil {
				return cbErr
			}
		case "response":
			var r struct {
				Response *ChatResponse `json:"response"`
			}
			if err := json.Unmarshal([]byte(f.Data), &r); err != nil || r.Response == nil {
				return errs.E(errs.DependencyUnavailable, "model-policy sent a malformed response event")
			}
			out = r.Response
			return errStreamEnd
		case "error":
			return httpx.DecodeErrorFrom("model-policy", http.StatusInternalServerError, http.Header{}, []byte(f.Data))
		}
		return nil
	})
	switch {
	case errors.Is(err, errStreamEnd):
	case cbErr != nil:
		return ChatResponse{}, cbErr
	case err != nil:
		var e *errs.Error
		if errors.As(err, &e) && ctx.Err() == nil {
			return ChatResponse{}, e
		}
		return ChatResponse{}, transportError(ctx, err) // the stream broke off
	case out == nil:
		return ChatResponse{}, errs.E(errs.DependencyUnavailable, "model-policy's stream ended without a response")
	}
	out.Usage.Estimated = out.UsageEstimated
	return *out, nil
}

// streamRequest is a ChatRequest with the stream flag of the wire request.
type streamRequest struct {
	ChatRequest
	Stream bool `json:"stream"`
}

var errStreamEnd = errors.New("stream end")
