package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nexixai/agentos/internal/errs"
)

// Thread is a conversation: a run created on it sees the thread's earlier
// messages in its model input and, when it ends, appends its own turn.
// At most one run of a thread is active at a time (ActiveRunID); what a
// second one does is its MultitaskStrategy.
type Thread struct {
	TenantID string            `json:"tenant_id"`
	ThreadID string            `json:"thread_id"`
	Metadata map[string]string `json:"metadata"`
	// ActiveRunID is the thread's run that is queued or running, "" when
	// none is. Runs waiting behind it (enqueue) are not listed here.
	ActiveRunID string    `json:"active_run_id"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ThreadMessage is one message of a thread's conversation, in the roles
// of a chat model's input: user (a run's input), assistant (a model's
// answer or tool calls) and tool (a tool call's result).
type ThreadMessage struct {
	TenantID  string `json:"tenant_id"`
	ThreadID  string `json:"thread_id"`
	MessageID string `json:"message_id"`
	// Seq orders a thread's messages: 1, 2, 3... in the order they were
	// appended.
	Seq     int64  `json:"seq"`
	RunID   string `json:"run_id"`
	Role    string `json:"role"`
	Content string `json:"content"`
	// ToolCalls is the JSON array of an assistant message's tool calls
	// ({id, tool_id, name, arguments}), absent when it has none.
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
	// ToolCallID is the call a tool message answers.
	ToolCallID string    `json:"tool_call_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// Multitask strategies: what a run created on a thread that already has
// an active run does.
const (
	// MultitaskReject refuses the new run (conflict). The default.
	MultitaskReject = "reject"
	// MultitaskEnqueue admits the new run queued; it starts when the runs
	// before it on the thread have ended.
	MultitaskEnqueue = "enqueue"
	// MultitaskInterrupt cancels the active run, keeping its partial turn.
	MultitaskInterrupt = "interrupt"
	// MultitaskRollback cancels the active run and discards its turn.
	MultitaskRollback = "rollback"
)

// ValidMultitaskStrategy reports whether s is one of the four strategies.
func ValidMultitaskStrategy(s string) bool {
	switch s {
	case MultitaskReject, MultitaskEnqueue, MultitaskInterrupt, MultitaskRollback:
		return true
	}
	return false
}

// ErrThreadBusy is wrapped by the conflict a reject run gets when its
// thread has an active run (errors.Is tells it from other conflicts).
var ErrThreadBusy = errors.New("thread has an active run")

// ListThreadsParams filters a tenant's threads.
type ListThreadsParams struct {
	TenantID string
	// Metadata keeps the threads whose metadata has every one of these
	// key/value pairs.
	Metadata map[string]string
	Limit    int    // default 50
	Cursor   string // thread_id to continue after (exclusive), newest first
}

// ListThreadMessagesParams selects a thread's messages.
type ListThreadMessagesParams struct {
	TenantID string
	ThreadID string
	// AfterSeq returns messages with seq > AfterSeq, oldest first.
	AfterSeq int64
	// Limit caps the page (default 100, at most 10000).
	Limit int
	// Last, if > 0, returns the thread's newest Last messages instead (in
	// seq order), ignoring AfterSeq and Limit.
	Last int
}

// DeleteThreadParams deletes a thread with its messages.
type DeleteThreadParams struct {
	TenantID string
	ThreadID string
	// Audit, if non-nil, is appended to the audit chain in the same
	// transaction.
	Audit *AuditRecord
}

// ThreadStore keeps threads and their messages. Runs join a thread
// through CreateRun (Run.ThreadID, with Run.MultitaskStrategy decided in
// the admission transaction under the thread's lock) and leave it through
// ApplyRunChange: the change that makes a thread's run terminal appends
// the run's turn (TurnMessages of its input and steps, unless it was
// rolled back or never started), clears the thread's active run and
// starts the next waiting one, in the same transaction.
type ThreadStore interface {
	// CreateThread inserts t. ErrConflict if the id exists.
	CreateThread(ctx context.Context, t Thread) error
	// GetThread returns ErrNotFound if absent or in another tenant.
	GetThread(ctx context.Context, tenantID, threadID string) (Thread, error)
	// ListThreads lists a tenant's threads newest first, and the cursor of
	// the next page ("" when there is none).
	ListThreads(ctx context.Context, p ListThreadsParams) ([]Thread, string, error)
	// DeleteThread removes the thread and its messages. ErrNotFound if
	// absent or in another tenant; ErrConflict while a run of the thread
	// is active or waiting (cancel it first).
	DeleteThread(ctx context.Context, p DeleteThreadParams) error
	// ListThreadMessages returns a thread's messages in seq order.
	// ErrNotFound if the thread is absent or in another tenant.
	ListThreadMessages(ctx context.Context, p ListThreadMessagesParams) ([]ThreadMessage, error)
}

// Limits on thread metadata.
const (
	MaxThreadMetadataPairs = 32
	MaxThreadMetadataValue = 512
)

var metadataKey = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidateThreadMetadata checks metadata keys (1-64 letters, digits, _ . -)
// and values (at most 512 bytes), at most 32 pairs; field names the
// request field ("metadata").
func ValidateThreadMetadata(field string, m map[string]string) error {
	if len(m) > MaxThreadMetadataPairs {
		return errs.Field(field, "must have at most %d keys", MaxThreadMetadataPairs)
	}
	for k, v := range m {
		if !metadataKey.MatchString(k) {
			return errs.Field(field, "key %q must be 1-64 letters, digits, '_', '.' or '-'", k)
		}
		if len(v) > MaxThreadMetadataValue {
			return errs.Field(fmt.Sprintf("%s.%s", field, k), "must be at most %d bytes", MaxThreadMetadataValue)
		}
	}
	return nil
}

// Validate checks a thread record.
func (t Thread) Validate() error {
	if err := Required("tenant_id", t.TenantID, "thread_id", t.ThreadID); err != nil {
		return err
	}
	return ValidateThreadMetadata("metadata", t.Metadata)
}

// The step records TurnMessages reads, as the executor writes them.
type (
	turnModelOutput struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		ToolCalls []json.RawMessage `json:"tool_calls"`
	}
	turnToolInput struct {
		ModelCallID string `json:"model_call_id"`
	}
	turnToolOutput struct {
		Status string          `json:"status"`
		Output json.RawMessage `json:"output"`
		Error  *ErrorBody      `json:"error"`
	}
)

// TurnMessages is a run's turn in a thread: the user's input, then for
// each completed model step the assistant message (with its tool calls),
// and for each finished tool step the tool message. A partial turn (the
// run was canceled between a model step and its tool results) keeps only
// the tool calls that were answered, so that the thread stays a valid
// chat for any model. Seq, ids and times are left to the store.
func TurnMessages(runID string, input RunInput, steps []Step) []ThreadMessage {
	msgs := []ThreadMessage{{RunID: runID, Role: "user", Content: input.Text}}
	// answered: the calls a finished tool step answers; offered: the
	// calls of the assistant messages kept so far (a tool message answers
	// one of them, or is left out).
	answered, offered := map[string]bool{}, map[string]bool{}
	for _, st := range steps {
		if st.Kind == StepTool && st.Status != StepStarted {
			var in turnToolInput
			_ = json.Unmarshal(st.Input, &in) // written by the executor
			answered[in.ModelCallID] = true
		}
	}
	for _, st := range steps {
		switch {
		case st.Kind == StepModel && st.Status == StepCompleted:
			var out turnModelOutput
			_ = json.Unmarshal(st.Output, &out)
			var calls []json.RawMessage
			for _, c := range out.ToolCalls {
				var id struct {
					ID string `json:"id"`
				}
				if json.Unmarshal(c, &id) == nil && answered[id.ID] && !offered[id.ID] {
					calls = append(calls, c)
					offered[id.ID] = true
				}
			}
			if out.Message.Content == "" && len(calls) == 0 {
				continue
			}
			m := ThreadMessage{RunID: runID, Role: "assistant", Content: out.Message.Content}
			if len(calls) > 0 {
				m.ToolCalls, _ = json.Marshal(calls)
			}
			msgs = append(msgs, m)
		case st.Kind == StepTool && st.Status != StepStarted:
			var in turnToolInput
			var out turnToolOutput
			_ = json.Unmarshal(st.Input, &in)
			_ = json.Unmarshal(st.Output, &out)
			if !offered[in.ModelCallID] {
				continue
			}
			content := string(out.Output)
			if out.Status != "ok" {
				b, _ := json.Marshal(map[string]any{"status": out.Status, "error": out.Error})
				content = string(b)
			}
			msgs = append(msgs, ThreadMessage{RunID: runID, Role: "tool", Content: content, ToolCallID: in.ModelCallID})
		}
	}
	return msgs
}
