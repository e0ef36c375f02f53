package store

import (
	"context"
	"encoding/json"
	"time"
)

// Schedule states.
const (
	ScheduleActive = "active"
	SchedulePaused = "paused"
)

// Misfire policies: what a schedule does with ticks that passed while no
// node was there to fire them.
const (
	MisfireSkip    = "skip"     // drop them; fire from the next tick on
	MisfireCatchUp = "catch_up" // fire the latest CatchUpMax of them, then go on
)

// Schedule creates a run of an agent at every tick of a cron expression
// or a fixed interval.
type Schedule struct {
	TenantID   string `json:"tenant_id"`
	ScheduleID string `json:"schedule_id"`
	AgentID    string `json:"agent_id"`
	// Cron (5 fields, or 6 with seconds first) or Every (a Go duration,
	// at least 1s): exactly one is set.
	Cron     string `json:"cron,omitempty"`
	Every    string `json:"every,omitempty"`
	Timezone string `json:"timezone"`
	// Input is the run-create body's input, as given.
	Input    json.RawMessage `json:"input"`
	ThreadID string          `json:"thread_id,omitempty"`
	Status   string          `json:"status"`
	// MisfirePolicy is MisfireSkip or MisfireCatchUp (with CatchUpMax ≥ 1).
	MisfirePolicy string `json:"misfire_policy"`
	CatchUpMax    int    `json:"catch_up_max,omitempty"`
	// PrincipalID, Scopes and Roles are the creator's: every run the
	// schedule creates runs as that principal.
	PrincipalID string   `json:"principal_id"`
	Scopes      []string `json:"-"`
	Roles       []string `json:"-"`
	// NextRunAt is the next tick not yet fired (nil while paused).
	NextRunAt  *time.Time `json:"next_run_at"`
	LastTickAt *time.Time `json:"last_tick_at"`
	LastRunID  string     `json:"last_run_id,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// ListSchedulesParams pages a tenant's schedules by id.
type ListSchedulesParams struct {
	TenantID string
	Limit    int    // default 50
	Cursor   string // schedule_id to continue after (exclusive)
}

// AdvanceScheduleParams moves a schedule past the ticks it fired.
type AdvanceScheduleParams struct {
	TenantID   string
	ScheduleID string
	// FromNextRunAt must equal the stored NextRunAt (compare-and-set: of
	// replicas firing the same ticks, one advances).
	FromNextRunAt time.Time
	NextRunAt     time.Time
	LastTickAt    *time.Time
	LastRunID     string
	LastError     string
	UpdatedAt     time.Time
}

// ScheduleStore keeps schedules.
type ScheduleStore interface {
	// CreateSchedule inserts s. ErrConflict if the id exists.
	CreateSchedule(ctx context.Context, s Schedule) error
	// GetSchedule: ErrNotFound if absent or in another tenant.
	GetSchedule(ctx context.Context, tenantID, scheduleID string) (Schedule, error)
	// ListSchedules lists a tenant's schedules by id, and the next cursor.
	ListSchedules(ctx context.Context, p ListSchedulesParams) ([]Schedule, string, error)
	// SetScheduleStatus pauses or resumes a schedule: status, next_run_at
	// (nil when paused) and updated_at. ErrNotFound as GetSchedule.
	SetScheduleStatus(ctx context.Context, tenantID, scheduleID, status string, nextRunAt *time.Time, at time.Time) (Schedule, error)
	// DeleteSchedule: ErrNotFound if absent or in another tenant.
	DeleteSchedule(ctx context.Context, tenantID, scheduleID string) error
	// DueSchedules lists active schedules of every tenant whose NextRunAt
	// is at or before now, earliest first, at most limit (default 100).
	DueSchedules(ctx context.Context, now time.Time, limit int) ([]Schedule, error)
	// AdvanceSchedule applies p if the schedule is active and its
	// NextRunAt still equals p.FromNextRunAt; false (no error) otherwise.
	AdvanceSchedule(ctx context.Context, p AdvanceScheduleParams) (bool, error)
}
