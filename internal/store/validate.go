package store

import (
	"math"
	"strconv"

	"github.com/nexixai/agentos/internal/errs"
)

// This file holds the preconditions every adapter checks before it writes.
// They return the same *errs.Error from every adapter: invalid_request
// naming the offending field (errs.Field). Bad input changes nothing.

// Required returns an invalid_request error naming the first empty field of
// name/value pairs ("tenant_id", t.TenantID, "agent_id", ...), or nil.
func Required(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] == "" {
			return errs.Field(fields[i], "is required")
		}
	}
	return nil
}

// Valid reports whether s is one of the run statuses.
func (s RunStatus) Valid() bool {
	switch s {
	case RunQueued, RunRunning, RunCompleted, RunFailed, RunCanceled, RunRequiresAction:
		return true
	}
	return false
}

// ValidWindow reports whether w is a budget window: minute, hour or day.
func ValidWindow(w string) bool { return w == "minute" || w == "hour" || w == "day" }

// ValidateTenantRecord checks a tenant before CreateTenant or UpdateTenant
// stores it: tenant_id is required.
func ValidateTenantRecord(t Tenant) error {
	return Required("tenant_id", t.TenantID)
}

// Validate checks a token before CreateToken: tenant_id, token_id and
// secret_hash are required.
func (t Token) Validate() error {
	return Required("tenant_id", t.TenantID, "token_id", t.TokenID, "secret_hash", t.SecretHash)
}

// Validate checks an agent before PutAgent: tenant_id and agent_id are required.
func (a Agent) Validate() error {
	return Required("tenant_id", a.TenantID, "agent_id", a.AgentID)
}

// Validate checks a run admission: tenant_id and agent_id are required, the
// status (empty means queued) must be known and IdempotencyTTL must not be
// negative.
func (p CreateRunParams) Validate() error {
	r := p.Run
	if err := Required("tenant_id", r.TenantID, "agent_id", r.AgentID); err != nil {
		return err
	}
	if r.Status != "" && !r.Status.Valid() {
		return errs.Field("status", "unknown run status %q", r.Status)
	}
	if p.IdempotencyTTL < 0 {
		return errs.Field("idempotency_ttl", "must not be negative")
	}
	return nil
}

// Validate checks a run change: tenant_id and run_id are required, a new
// run's status must be known and every step needs a step_id.
func (c RunChange) Validate() error {
	if err := Required("tenant_id", c.TenantID, "run_id", c.RunID); err != nil {
		return err
	}
	if c.Run != nil && !c.Run.Status.Valid() {
		return errs.Field("status", "unknown run status %q", c.Run.Status)
	}
	for i, s := range c.Steps {
		if s.StepID == "" {
			return errs.Field("steps["+strconv.Itoa(i)+"].step_id", "is required")
		}
	}
	if a := c.Approval; a != nil {
		if err := Required("approval.tool_call_id", a.ToolCallID, "approval.status", a.Status); err != nil {
			return err
		}
		if a.Deadline.IsZero() {
			return errs.Field("approval.deadline", "is required")
		}
	}
	return nil
}

// Validate checks a run listing: tenant_id is required.
func (p ListRunsParams) Validate() error {
	return Required("tenant_id", p.TenantID)
}

// Validate checks a budget reservation: tenant_id, a known window and its
// start are required; amounts and limits must be non-negative numbers.
func (p ReserveParams) Validate() error {
	if err := Required("tenant_id", p.TenantID); err != nil {
		return err
	}
	switch {
	case !ValidWindow(p.Window):
		return errs.Field("window", "must be minute, hour or day, not %q", p.Window)
	case p.WindowStart.IsZero():
		return errs.Field("window_start", "is required")
	case p.Tokens < 0:
		return errs.Field("tokens", "must not be negative")
	case p.CostUSD < 0 || math.IsNaN(p.CostUSD) || math.IsInf(p.CostUSD, 0):
		return errs.Field("cost_usd", "must be a non-negative number")
	case p.MaxTokens < 0:
		return errs.Field("max_tokens", "must not be negative")
	case p.MaxCostUSD < 0 || math.IsNaN(p.MaxCostUSD):
		return errs.Field("max_cost_usd", "must be a non-negative number")
	}
	return nil
}

// ValidateSettlement checks the real usage SettleBudget records: tokens and
// cost must be non-negative numbers.
func ValidateSettlement(tokens int64, costUSD float64) error {
	if tokens < 0 {
		return errs.Field("tokens", "must not be negative")
	}
	if costUSD < 0 || math.IsNaN(costUSD) || math.IsInf(costUSD, 0) {
		return errs.Field("cost_usd", "must be a non-negative number")
	}
	return nil
}

// Validate checks a usage record before RecordUsage: tenant_id is required
// and the cost must be a finite number.
func (u UsageRecord) Validate() error {
	if err := Required("tenant_id", u.TenantID); err != nil {
		return err
	}
	if math.IsNaN(u.CostUSD) || math.IsInf(u.CostUSD, 0) {
		return errs.Field("cost_usd", "must be a number")
	}
	return nil
}

// Validate checks a usage listing: tenant_id is required.
func (f UsageFilter) Validate() error {
	return Required("tenant_id", f.TenantID)
}

// KVEntryOverhead is what one KV entry counts toward a tenant's
// max_memory_bytes beyond its namespace, key and value: the row and index
// bookkeeping, so many tiny entries cannot store far more than the quota.
const KVEntryOverhead = 32

// KVEntrySize is what an entry counts toward a tenant's max_memory_bytes.
func KVEntrySize(namespace, key string, value []byte) int64 {
	return int64(len(namespace)+len(key)+len(value)) + KVEntryOverhead
}

// ValidateKVPut checks a KVPut: tenant_id and key are required.
func ValidateKVPut(tenantID, key string) error {
	return Required("tenant_id", tenantID, "key", key)
}

// Validate checks a forward record: tenant_id and run_id are required.
func (f Forward) Validate() error {
	return Required("tenant_id", f.TenantID, "run_id", f.RunID)
}

// Validate checks a replicated event: tenant_id, event_id and run_id are
// required.
func (e IngestedEvent) Validate() error {
	return Required("tenant_id", e.Event.TenantID, "event_id", e.Event.EventID, "run_id", e.Event.RunID)
}
