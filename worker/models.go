package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/workerproto"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

// runModel forwards a model task to the named endpoint and returns the
// done result's output or error. A streamed chat sends each fragment to
// the waiting replica as a progress result (Seq 1, 2, ...) as it arrives.
// The request is model-policy's, already governed: the worker changes
// nothing in it and retries nothing.
func (w *Worker) runModel(ctx context.Context, task workerproto.Task, left time.Duration) (json.RawMessage, *workerproto.ErrorBody) {
	mc := task.Model
	if mc == nil {
		return nil, &workerproto.ErrorBody{Code: string(errs.InvalidRequest), Message: "a model task without its model call"}
	}
	p, ok := w.cfg.Models[mc.Endpoint]
	if !ok {
		return nil, &workerproto.ErrorBody{Code: string(errs.NotFound),
			Message: fmt.Sprintf("model endpoint %s is not served by worker %s (it serves %v)", mc.Endpoint, w.cfg.ID, w.modelNames())}
	}
	ctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	var out any
	var err error
	switch mc.Op {
	case workerproto.ModelChat:
		var req providers.ChatRequest
		if err := json.Unmarshal(mc.Request, &req); err != nil {
			return nil, &workerproto.ErrorBody{Code: string(errs.InvalidRequest), Message: "model task: chat request: " + err.Error()}
		}
		if mc.Stream {
			seq := 0
			out, err = p.ChatStream(ctx, req, func(d providers.Delta) error {
				seq++
				data, err := json.Marshal(d)
				if err != nil {
					return err
				}
				w.report(ctx, task, workerproto.Result{TaskID: task.TaskID, Kind: workerproto.ResultProgress, Seq: seq, Output: data}, false)
				return nil
			})
		} else {
			out, err = p.Chat(ctx, req)
		}
	case workerproto.ModelEmbed:
		var req providers.EmbedRequest
		if err := json.Unmarshal(mc.Request, &req); err != nil {
			return nil, &workerproto.ErrorBody{Code: string(errs.InvalidRequest), Message: "model task: embed request: " + err.Error()}
		}
		out, err = p.Embed(ctx, req)
	default:
		return nil, &workerproto.ErrorBody{Code: string(errs.InvalidRequest), Message: fmt.Sprintf("model task: op %q is not chat or embed", mc.Op)}
	}
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, &workerproto.ErrorBody{Code: string(errs.Timeout), Message: fmt.Sprintf("model endpoint %s did not answer before the task's deadline", mc.Endpoint)}
		}
		return nil, errorBody(err)
	}
	data, err := json.Marshal(out)
	if err != nil {
		return nil, errorBody(errs.Wrap(errs.Internal, err, "encode the model's answer"))
	}
	return data, nil
}

// modelNames lists the worker's model endpoints, sorted.
func (w *Worker) modelNames() []string { return slices.Sorted(maps.Keys(w.cfg.Models)) }
