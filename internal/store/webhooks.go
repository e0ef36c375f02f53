package store

import (
	"context"
	"time"
)

// Webhook delivery states.
const (
	// DeliveryPending is waiting for its next attempt (the first one too).
	DeliveryPending = "pending"
	// DeliverySucceeded got a 2xx answer.
	DeliverySucceeded = "succeeded"
	// DeliveryFailed gave up: its retry window ended, or the receiver
	// answered with a status that retrying cannot change.
	DeliveryFailed = "failed"
)

// Webhook event filters: which of a run's events a target receives.
const (
	WebhookEventsTerminal = "terminal" // run.completed, run.failed, run.canceled
	WebhookEventsAll      = "all"      // every event of the run
)

// WebhookTarget is one URL a run's events are delivered to: the run's own
// webhook (EndpointID "") or one of its tenant's default endpoints, copied
// onto the run when it is created so that later endpoint changes do not
// change where an admitted run's events go.
type WebhookTarget struct {
	URL        string `json:"url"`
	Events     string `json:"events"` // WebhookEventsTerminal or WebhookEventsAll
	EndpointID string `json:"endpoint_id,omitempty"`
}

// eventModelDelta is the token-streaming event (issue 13): never
// delivered by webhook, where deliveries of one run may arrive out of
// order and a message per token would swamp receivers.
const eventModelDelta = "agentos.model.delta"

// Wants reports whether the target receives an event of type typ.
func (t WebhookTarget) Wants(typ string) bool {
	if t.Events == WebhookEventsAll {
		return typ != eventModelDelta
	}
	switch typ {
	case EventRunCompleted, EventRunFailed, EventRunCanceled:
		return true
	}
	return false
}

// WebhookEndpoint is a tenant's default webhook: every run the tenant
// creates afterwards delivers its events (per Events) there as well.
type WebhookEndpoint struct {
	TenantID   string    `json:"tenant_id"`
	EndpointID string    `json:"endpoint_id"`
	URL        string    `json:"url"`
	Events     string    `json:"events"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// WebhookSecret is a tenant's signing secret ("whsec_" + base64 key).
// During a rotation the previous secret also signs deliveries until
// PreviousUntil, so receivers can switch over without losing any.
type WebhookSecret struct {
	TenantID      string
	Secret        string
	Previous      string
	PreviousUntil time.Time
	CreatedAt     time.Time
}

// WebhookAttempt is one delivery attempt as the delivery list shows it.
type WebhookAttempt struct {
	Attempt    int       `json:"attempt"`
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code,omitempty"` // 0: no HTTP answer
	Error      string    `json:"error,omitempty"`
	DurationMs int64     `json:"duration_ms"`
}

// WebhookDelivery is one event to deliver to one target: a row of the
// outbox written in the same transaction as the event.
type WebhookDelivery struct {
	TenantID      string           `json:"tenant_id"`
	DeliveryID    string           `json:"delivery_id"` // also the webhook-id header: stable across retries
	RunID         string           `json:"run_id"`
	Sequence      int64            `json:"sequence"`
	EventID       string           `json:"event_id"`
	EventType     string           `json:"event_type"`
	URL           string           `json:"url"`
	EndpointID    string           `json:"endpoint_id,omitempty"`
	Status        string           `json:"status"`
	Attempts      []WebhookAttempt `json:"attempts"`
	NextAttemptAt *time.Time       `json:"next_attempt_at"` // nil once final
	CreatedAt     time.Time        `json:"created_at"`
	CompletedAt   *time.Time       `json:"completed_at"`
}

// ClaimDeliveriesParams leases due deliveries to one dispatcher.
type ClaimDeliveriesParams struct {
	Owner string        // the dispatcher's id
	Now   time.Time     // deliveries with NextAttemptAt <= Now are due
	Lease time.Duration // how long the claim lasts unless finished
	Limit int           // at most this many (default 50)
}

// FinishAttemptParams records one attempt of a claimed delivery.
type FinishAttemptParams struct {
	TenantID   string
	DeliveryID string
	Owner      string // must still hold the claim, else ErrConflict
	Attempt    WebhookAttempt
	// Status is the delivery's state after the attempt; NextAttemptAt is
	// set when it stays pending.
	Status        string
	NextAttemptAt *time.Time
}

// WebhookStore keeps tenants' webhook endpoints and secrets and the
// delivery outbox. The outbox is filled by the store itself: CreateRun
// records CreateRunParams.Webhooks, and every event appended to that run
// afterwards (by CreateRun or ApplyRunChange, in their transaction) adds
// one pending delivery per target that wants it.
type WebhookStore interface {
	// PutWebhookEndpoint creates or replaces an endpoint (created_at kept).
	PutWebhookEndpoint(ctx context.Context, e WebhookEndpoint) error
	// ListWebhookEndpoints lists a tenant's endpoints ordered by id.
	ListWebhookEndpoints(ctx context.Context, tenantID string) ([]WebhookEndpoint, error)
	// DeleteWebhookEndpoint: ErrNotFound if absent or in another tenant.
	DeleteWebhookEndpoint(ctx context.Context, tenantID, endpointID string) error
	// EnsureWebhookSecret returns the tenant's secret, storing s first
	// when the tenant has none (concurrent callers all get the winner).
	EnsureWebhookSecret(ctx context.Context, s WebhookSecret) (WebhookSecret, error)
	// RotateWebhookSecret replaces the secret by s.Secret; the old one
	// becomes s.Previous until s.PreviousUntil (the caller leaves Previous
	// empty: the store fills it).
	RotateWebhookSecret(ctx context.Context, s WebhookSecret) (WebhookSecret, error)
	// ClaimWebhookDeliveries leases up to Limit due pending deliveries of
	// any tenant whose lease is free or expired (one claimant at a time,
	// across processes), oldest due first.
	ClaimWebhookDeliveries(ctx context.Context, p ClaimDeliveriesParams) ([]WebhookDelivery, error)
	// FinishWebhookAttempt appends the attempt, sets the new state and
	// frees the lease. ErrConflict if Owner no longer holds the delivery.
	FinishWebhookAttempt(ctx context.Context, p FinishAttemptParams) error
	// ListWebhookDeliveries lists a run's deliveries by sequence then id.
	// ErrNotFound if the run is absent or in another tenant.
	ListWebhookDeliveries(ctx context.Context, tenantID, runID string) ([]WebhookDelivery, error)
}
