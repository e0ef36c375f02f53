// Package store defines AgentOS's domain types and the storage ports every
// backend implements (SQLite in store/sqlite, PostgreSQL in store/postgres).
// The ports carry no backend types. Every method is tenant-scoped: reading an object
// with the wrong tenant finds nothing (errs.ErrNotFound), exactly as if the
// object did not exist.
//
// Stability: methods take params structs so that adding a field never breaks
// an adapter. Adapters return errs sentinels (errs.ErrNotFound,
// errs.ErrConflict, errs.ErrQuotaExceeded), wrapped as they like; callers use
// errors.Is. The conformance suite in store/storetest is the executable
// contract of this package.
package store

import (
	"context"
	"time"
)

// Store is everything a node persists. Adapters implement all of it.
type Store interface {
	TenantStore
	TokenStore
	AgentStore
	RunStore
	EventLog
	AuditLog
	KVStore
	UsageStore
	FederationStore
	ToolStore
	MCPServerStore
	MemoryStore
	ThreadStore
	ApprovalStore
	WebhookStore
	ScheduleStore
	WorkerStore
	ArtifactStore
	// Ping reports whether the backend is reachable (for /readyz).
	Ping(ctx context.Context) error
	Close() error
}

// TenantStore keeps tenants.
type TenantStore interface {
	// CreateTenant inserts t. ErrConflict if the id exists.
	CreateTenant(ctx context.Context, t Tenant) error
	// GetTenant returns ErrNotFound for an unknown id.
	GetTenant(ctx context.Context, tenantID string) (Tenant, error)
	// ListTenants returns all tenants ordered by id.
	ListTenants(ctx context.Context) ([]Tenant, error)
	// UpdateTenant replaces the mutable fields of an existing tenant
	// (everything but tenant_id and created_at). ErrNotFound if absent.
	// When ifUpdatedAt is not zero the update applies only if the stored
	// tenant's UpdatedAt still equals it, else ErrConflict: a
	// read-modify-write cannot undo a concurrent one.
	UpdateTenant(ctx context.Context, t Tenant, ifUpdatedAt time.Time) error
}

// TokenStore keeps API tokens by the hash of their secret.
type TokenStore interface {
	// CreateToken inserts tok. ErrConflict if the id or hash exists.
	CreateToken(ctx context.Context, tok Token) error
	// TokenBySecretHash finds a token in any tenant (it is how a request's
	// tenant is found). ErrNotFound if absent; revoked tokens are returned
	// with RevokedAt set, the caller decides.
	TokenBySecretHash(ctx context.Context, hash string) (Token, error)
	// RevokeToken sets RevokedAt. ErrNotFound if the token is not in tenantID.
	RevokeToken(ctx context.Context, tenantID, tokenID string, at time.Time) error
	// ListTokens lists a tenant's tokens (without secrets).
	ListTokens(ctx context.Context, tenantID string) ([]Token, error)
}

// AgentStore keeps agent definitions.
type AgentStore interface {
	// PutAgent creates the agent or replaces it; the caller sets Version.
	PutAgent(ctx context.Context, a Agent) error
	// GetAgent returns ErrNotFound if absent or in another tenant.
	GetAgent(ctx context.Context, tenantID, agentID string) (Agent, error)
	// ListAgents lists a tenant's agents ordered by id.
	ListAgents(ctx context.Context, tenantID string) ([]Agent, error)
}

// CreateRunParams is the whole admission of a run, applied in one transaction.
type CreateRunParams struct {
	Run Run
	// FirstEvent is appended as sequence 1 (run.created).
	FirstEvent Event
	// Audit, if non-nil, is appended to the audit chain in the same transaction.
	Audit *AuditRecord
	// IdempotencyKey, if set, makes the create idempotent per
	// (tenant, principal, agent, key). Fingerprint identifies the request body.
	IdempotencyKey string
	Fingerprint    string
	// IdempotencyTTL is how long the key is remembered.
	IdempotencyTTL time.Duration
	// Priority orders the queue entry: higher first (low=0, normal=1, high=2).
	Priority int
	// Webhooks are the targets the run's events are delivered to (see
	// WebhookStore): recorded with the run, in the same transaction.
	Webhooks []WebhookTarget
	// ReplayOnly makes CreateRun write nothing: with a known, unexpired
	// IdempotencyKey it replays (or conflicts) as usual; otherwise it returns
	// ErrNotFound. Callers use it to answer a duplicate even when creating a
	// new run would be refused (e.g. by a rate limit).
	ReplayOnly bool
	// InterruptEvent is the template of the run.canceled event (type and
	// payload; the store fills the rest) appended to the thread's active
	// run when Run.MultitaskStrategy is interrupt or rollback.
	InterruptEvent Event
}

// CreateRunResult tells whether a new run was created or an earlier one replayed.
type CreateRunResult struct {
	Run      Run
	Replayed bool
	// Interrupted is the run.canceled event committed for the thread's
	// run that this one interrupted or rolled back, nil when none was.
	Interrupted *Event
}

// ListRunsParams filters a tenant's runs.
type ListRunsParams struct {
	TenantID string
	AgentID  string // optional
	Status   string // optional
	// ThreadID, if set, keeps the runs created on that thread.
	ThreadID string
	Limit    int    // default 50
	Cursor   string // run_id to continue after (exclusive), newest first
}

// RunChange is one atomic change to a run: an optional compare-and-set status
// transition with new run fields, step upserts and appended events. Either all
// of it commits or none.
type RunChange struct {
	TenantID string
	RunID    string
	// FromStatuses, if non-empty, requires the run's current status to be one
	// of them; otherwise the change fails with ErrConflict.
	FromStatuses []RunStatus
	// ExpectAttempt, if > 0, requires the run's Attempt to equal it; otherwise
	// the change fails with ErrConflict. An executor sets it so that once
	// another executor has resumed the run (incrementing Attempt), the stale
	// one can no longer write.
	ExpectAttempt int
	// StatusOnly, with Run, writes only Status, CompletedAt, Output and Error
	// (a cancel must not overwrite what the executor recorded meanwhile).
	StatusOnly bool
	// Run, if non-nil, replaces the run's mutable fields: Status, StartedAt,
	// CompletedAt, Summary, Output, Error, Attempt.
	Run *Run
	// Steps are inserted or replaced by StepID.
	Steps []Step
	// Events are appended in order; the store assigns Sequence (gapless per
	// run), and EventID/Time when empty.
	Events []Event
	// Approval, if non-nil, is inserted or replaced (by tenant, run and
	// tool call id) with the change: a run stops in requires_action and
	// is resumed together with its approval record (store/approvals.go).
	Approval *Approval
	// Enqueue puts the run back in the run queue with EnqueuePriority (a
	// run resumed after an approval); an entry already there is kept.
	Enqueue         bool
	EnqueuePriority int
	// Dequeue removes the run's queue entry (a run stopping in
	// requires_action): whoever holds its lease can no longer ack or renew
	// it, and a later Enqueue adds a fresh one.
	Dequeue bool
}

// RunStore keeps runs and their steps.
type RunStore interface {
	// CreateRun admits a run: idempotency lookup/insert, run row, first
	// event, queue entry and audit record in one transaction. Same key and
	// fingerprint: the original run with Replayed=true. Same key, different
	// fingerprint: ErrConflict. Safe under concurrent duplicates.
	CreateRun(ctx context.Context, p CreateRunParams) (CreateRunResult, error)
	// GetRun returns ErrNotFound if absent or in another tenant.
	GetRun(ctx context.Context, tenantID, runID string) (Run, error)
	// ListRuns lists a tenant's runs newest first, and the cursor for the
	// next page ("" when there is none).
	ListRuns(ctx context.Context, p ListRunsParams) ([]Run, string, error)
	// ApplyRunChange commits c atomically and returns the appended events
	// with their sequences. ErrNotFound for an unknown run; ErrConflict when
	// FromStatuses does not match.
	ApplyRunChange(ctx context.Context, c RunChange) ([]Event, error)
	// ListSteps returns a run's steps ordered by Index.
	ListSteps(ctx context.Context, tenantID, runID string) ([]Step, error)
	// PurgeIdempotency deletes idempotency keys that expired before now.
	PurgeIdempotency(ctx context.Context, now time.Time) (int, error)
}

// ListEventsParams selects a range of a run's events.
type ListEventsParams struct {
	TenantID      string
	RunID         string
	AfterSequence int64 // exclusive
	Limit         int   // default 1000
}

// EventLog reads events; they are appended through RunStore.
type EventLog interface {
	// ListEvents returns events with sequence > AfterSequence in order.
	// ErrNotFound if the run is absent or in another tenant.
	ListEvents(ctx context.Context, p ListEventsParams) ([]Event, error)
}

// ListAuditParams filters the audit log.
type ListAuditParams struct {
	TenantID string // "" = all tenants (platform admin only)
	AfterSeq int64
	Limit    int // default 100
}

// AuditLog is the append-only, hash-chained audit trail.
type AuditLog interface {
	// AppendAudit sets Seq, PrevHash, Hash and Stored (the canonical bytes
	// stored for the record, see CanonicalAudit; Hash is their SHA-256) and
	// appends. ListAudit returns records with Stored as read back.
	AppendAudit(ctx context.Context, r AuditRecord) (AuditRecord, error)
	// AppendAudits appends rs in order, as AppendAudit would one by one, in
	// one transaction: all are appended or, on error, none.
	AppendAudits(ctx context.Context, rs []AuditRecord) ([]AuditRecord, error)
	// ListAudit lists records in Seq order.
	ListAudit(ctx context.Context, p ListAuditParams) ([]AuditRecord, error)
}

// KVStore is tenant-scoped key/value memory (tool.kv.*).
type KVStore interface {
	// KVPut stores value under (tenant, namespace, key). If maxBytes > 0 and
	// the tenant's total stored bytes after the put would exceed it, nothing
	// is written and ErrQuotaExceeded is returned.
	KVPut(ctx context.Context, tenantID, namespace, key string, value []byte, maxBytes int64) error
	// KVGet returns ErrNotFound if absent.
	KVGet(ctx context.Context, tenantID, namespace, key string) ([]byte, error)
	// KVDelete removes a key; deleting a missing key is not an error.
	KVDelete(ctx context.Context, tenantID, namespace, key string) error
	// KVUsage returns the tenant's total stored bytes.
	KVUsage(ctx context.Context, tenantID string) (int64, error)
}

// ReserveParams asks to reserve part of a tenant's budget for one window.
type ReserveParams struct {
	TenantID    string
	Window      string    // minute, hour or day
	WindowStart time.Time // start of the current window
	MaxTokens   int64     // 0 = no token limit
	MaxCostUSD  float64   // 0 = no cost limit
	Tokens      int64     // tokens to reserve
	CostUSD     float64   // cost to reserve
}

// Reservation is a granted budget reservation, settled later.
type Reservation struct {
	ReservationID string
	TenantID      string
	WindowStart   time.Time
	Window        string
	Tokens        int64
	CostUSD       float64
}

// BudgetExceeded is the detail of a refused reservation.
type BudgetUsage struct {
	Window      string
	WindowStart time.Time
	UsedTokens  int64
	UsedCostUSD float64
}

// UsageFilter selects usage records.
type UsageFilter struct {
	TenantID    string // required
	PrincipalID string
	AgentID     string
	RunID       string
	Since       time.Time
	Until       time.Time
}

// UsageStore meters model use and keeps budgets.
type UsageStore interface {
	// ReserveBudget atomically checks used+reserved+requested against the
	// limits and records the reservation. Over a limit: an error matching
	// errs.ErrQuotaExceeded (an *errs.Error with details limit/used/window).
	ReserveBudget(ctx context.Context, p ReserveParams) (Reservation, error)
	// SettleBudget replaces a reservation by the real usage.
	SettleBudget(ctx context.Context, r Reservation, tokens int64, costUSD float64) error
	// BudgetUsage returns used (settled + reserved) amounts for a window.
	BudgetUsage(ctx context.Context, tenantID, window string, windowStart time.Time) (BudgetUsage, error)
	// RecordUsage appends records to the usage ledger in one transaction:
	// all are recorded or, on error, none.
	RecordUsage(ctx context.Context, us ...UsageRecord) error
	// ListUsage returns matching records, oldest first.
	ListUsage(ctx context.Context, f UsageFilter) ([]UsageRecord, error)
}

// IngestedEvent is an event replicated from a peer.
type IngestedEvent struct {
	Event       Event
	SourceStack string
	IngestedAt  time.Time
}

// FederationStore keeps what the federation service must remember.
type FederationStore interface {
	// PutForward records a forwarded run. ErrConflict if (tenant, run) exists.
	PutForward(ctx context.Context, f Forward) error
	// GetForward returns ErrNotFound if absent or in another tenant.
	GetForward(ctx context.Context, tenantID, runID string) (Forward, error)
	// UseJTI records a token id until expiresAt; false if it was seen before
	// (a replay). Expired entries may be purged.
	UseJTI(ctx context.Context, jti string, expiresAt time.Time) (bool, error)
	// IngestEvent stores a replicated event; false (and nothing stored) if
	// its event_id was ingested before.
	IngestEvent(ctx context.Context, e IngestedEvent) (bool, error)
	// ListIngestedEvents lists a tenant's ingested events of one run by
	// sequence; source, when not empty, keeps only those ingested from that
	// stack.
	ListIngestedEvents(ctx context.Context, tenantID, runID, source string) ([]Event, error)
}
