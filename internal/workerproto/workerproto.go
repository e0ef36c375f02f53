// Package workerproto is the wire between the orchestrator and worker
// nodes on the NATS bus: subjects, the task, result and heartbeat
// messages, queue names derived from labels, and the permissions the bus
// gives each worker. Both sides and the embedded NATS server (natsd) use
// it, so what a worker may touch is written in one place.
//
// # Subjects (namespace ns, default "agentos")
//
//	ns.work.task-<h>                 tasks for placement h (JetStream work queue, stream NS_WORK)
//	ns.wk.hb.<worker>                a worker's heartbeat (core NATS, every HeartbeatInterval)
//	ns.wk.res.<worker>.<replica>.<t> a task's progress and result, to the orchestrator replica that sent it
//
// h is a hash of the placement's labels (QueueName). A worker with labels
// L pulls from the queue of every non-empty subset of L: a task placed on
// {gpu: a100} reaches every worker labelled gpu=a100, whatever else it
// carries. Each queue is one durable consumer shared by its workers, so
// a task goes to exactly one of them.
//
// A worker dedicated to tenants T (registered with --tenants) pulls
// instead from the tenant queues of those tenants (TenantQueueName: the
// same hash over the labels and the tenant) and from no shared queue; the
// bus's permissions hold it to them. The orchestrator sends a tenant's
// task to its tenant queue when a live worker dedicated to it matches the
// placement, else to the shared queue (Queues, dispatch).
//
// # What a worker may do (Permissions)
//
// Publish only its own heartbeat and results (so a result names its
// worker: the orchestrator reads worker_id from the subject, not the
// body), and pull and ack on its queues' consumers; subscribe only to
// its own inbox prefix. An unknown or revoked worker has no credential
// the server accepts: it can neither take tasks nor publish results.
package workerproto

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/auth"
)

// Timing shared by both sides.
const (
	// HeartbeatInterval is how often a worker announces itself.
	HeartbeatInterval = time.Second
	// DefaultHeartbeatTimeout is how long without a heartbeat before the
	// orchestrator counts a worker dead (and its in-flight tasks
	// interrupted).
	DefaultHeartbeatTimeout = 5 * time.Second
)

// QueueName is the work queue of a placement's labels: "task-" and 20
// hex digits of the SHA-256 of the sorted pairs (queue names are
// [a-z0-9_-], label values are not).
func QueueName(labels map[string]string) string { return TenantQueueName(labels, "") }

// TenantQueueName is the work queue of a placement's labels for the
// workers dedicated to tenant (QueueName when tenant is "").
func TenantQueueName(labels map[string]string, tenant string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(labels[k])
		b.WriteByte('\n')
	}
	if tenant != "" {
		b.WriteString("\x00tenant\x00")
		b.WriteString(tenant)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return "task-" + hex.EncodeToString(sum[:10])
}

// Subsets lists the non-empty subsets of labels (2^n - 1 of them; n is
// at most store.MaxWorkerLabels).
func Subsets(labels map[string]string) []map[string]string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []map[string]string
	for mask := 1; mask < 1<<len(keys); mask++ {
		s := map[string]string{}
		for i, k := range keys {
			if mask&(1<<i) != 0 {
				s[k] = labels[k]
			}
		}
		out = append(out, s)
	}
	return out
}

// Queues lists the work queues a worker with labels serves: the shared
// queue of every subset of its labels, or, for a worker dedicated to
// tenants, each subset's queue of each of those tenants.
func Queues(labels map[string]string, tenants []string) []string {
	var out []string
	for _, sub := range Subsets(labels) {
		if len(tenants) == 0 {
			out = append(out, QueueName(sub))
			continue
		}
		for _, t := range tenants {
			out = append(out, TenantQueueName(sub, t))
		}
	}
	return out
}

// Matches reports whether a worker with labels has every label of the
// placement.
func Matches(placement, labels map[string]string) bool {
	for k, v := range placement {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Subjects names the subjects of namespace NS.
type Subjects struct{ NS string }

// WorkStream is the JetStream stream of work queues (bus/nats makes it).
func (s Subjects) WorkStream() string { return strings.ToUpper(s.NS) + "_WORK" }

// Consumer is the durable consumer of a queue (bus/nats's naming).
func (s Subjects) Consumer(queue string) string { return "work-" + queue }

// Heartbeat is a worker's heartbeat subject.
func (s Subjects) Heartbeat(workerID string) string { return s.NS + ".wk.hb." + workerID }

// Heartbeats matches every worker's heartbeat.
func (s Subjects) Heartbeats() string { return s.NS + ".wk.hb.*" }

// Result is where a worker reports on a task.
func (s Subjects) Result(workerID, replica, taskID string) string {
	return s.NS + ".wk.res." + workerID + "." + replica + "." + taskID
}

// Results matches every result addressed to one orchestrator replica.
func (s Subjects) Results(replica string) string { return s.NS + ".wk.res.*." + replica + ".*" }

// ResultWorker is the worker id in a result subject ("" if it is not one).
func (s Subjects) ResultWorker(subject string) string {
	rest, ok := strings.CutPrefix(subject, s.NS+".wk.res.")
	if !ok {
		return ""
	}
	w, _, _ := strings.Cut(rest, ".")
	return w
}

// InboxPrefix is a worker's private inbox prefix (its replies and pulled
// messages arrive there; it may subscribe nowhere else).
func InboxPrefix(workerID string) string { return "_INBOX_" + workerID }

// Permissions are a worker's allowed subjects.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// WorkerPermissions is what the bus lets worker workerID with labels do;
// tenants, when not empty, dedicates it to those tenants' queues.
func (s Subjects) WorkerPermissions(workerID string, labels map[string]string, tenants []string) Permissions {
	p := Permissions{
		Publish:   []string{s.Heartbeat(workerID), s.NS + ".wk.res." + workerID + ".>"},
		Subscribe: []string{InboxPrefix(workerID) + ".>"},
	}
	stream := s.WorkStream()
	for _, q := range Queues(labels, tenants) {
		c := s.Consumer(q)
		p.Publish = append(p.Publish,
			"$JS.API.CONSUMER.CREATE."+stream+"."+c+".>",
			"$JS.API.CONSUMER.INFO."+stream+"."+c,
			"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+c,
			"$JS.ACK."+stream+"."+c+".>")
	}
	return p
}

// Task kinds.
const (
	// TaskTool (or "") runs ToolID with Input.
	TaskTool = "tool"
	// TaskModel calls one of the worker's model endpoints (Model).
	TaskModel = "model"
)

// Model operations.
const (
	ModelChat  = "chat"
	ModelEmbed = "embed"
)

// ModelCall is a model call on one of a worker's model endpoints.
// model-policy decided it after entitlements, policy (the messages are
// already redacted) and budget; the worker only forwards it.
type ModelCall struct {
	// Endpoint is the worker's endpoint name (--model-endpoint NAME=...).
	Endpoint string `json:"endpoint"`
	// Op is ModelChat or ModelEmbed.
	Op string `json:"op"`
	// Stream asks for progress results, one per streamed fragment.
	Stream bool `json:"stream,omitempty"`
	// Request is a providers.ChatRequest or providers.EmbedRequest.
	Request json.RawMessage `json:"request"`
}

// Task is one tool or model call for a worker. The orchestrator (or
// model-policy) decided it; the worker only runs it (no policy, no
// retries of its own).
type Task struct {
	// Kind is TaskTool ("" too) or TaskModel.
	Kind       string          `json:"kind,omitempty"`
	Model      *ModelCall      `json:"model,omitempty"`
	TaskID     string          `json:"task_id"`
	TenantID   string          `json:"tenant_id"`
	AgentID    string          `json:"agent_id"`
	RunID      string          `json:"run_id"`
	StepID     string          `json:"step_id"`
	ToolCallID string          `json:"tool_call_id"`
	ToolID     string          `json:"tool_id"`
	Input      json.RawMessage `json:"input"`
	Auth       auth.Context    `json:"auth"`
	// Deadline: a worker that gets the task later drops it; one that
	// runs it stops then.
	Deadline time.Time `json:"deadline"`
	// IdempotencyKey is the tool call's id: every attempt of one call
	// carries it.
	IdempotencyKey string `json:"idempotency_key"`
	Attempt        int    `json:"attempt"`
	// Replica is the orchestrator replica waiting for the result.
	Replica     string `json:"replica"`
	Traceparent string `json:"traceparent,omitempty"`
}

// Result kinds.
const (
	// ResultStarted: the worker took the task and runs it now.
	ResultStarted = "started"
	// ResultDone: the task finished (Output or Error).
	ResultDone = "done"
	// ResultProgress: one streamed fragment of a model call (Output is a
	// providers.Delta), numbered by Seq from 1.
	ResultProgress = "progress"
)

// Result is a worker's report on a task.
type Result struct {
	TaskID     string          `json:"task_id"`
	Kind       string          `json:"kind"`
	Seq        int             `json:"seq,omitempty"`
	Output     json.RawMessage `json:"output,omitempty"`
	Error      *ErrorBody      `json:"error,omitempty"`
	DurationMs int64           `json:"duration_ms"`
}

// ErrorBody is a failed task's error (the contract's error object).
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Heartbeat is what a worker announces.
type Heartbeat struct {
	WorkerID string            `json:"worker_id"`
	Labels   map[string]string `json:"labels"`
	Tools    []string          `json:"tools"`
	// Models are the worker's model endpoint names.
	Models []string `json:"models,omitempty"`
	// Tenants the worker is dedicated to (none: any tenant).
	Tenants     []string  `json:"tenants,omitempty"`
	Concurrency int       `json:"concurrency"`
	InFlight    int       `json:"in_flight"`
	Draining    bool      `json:"draining"`
	Time        time.Time `json:"time"`
}
