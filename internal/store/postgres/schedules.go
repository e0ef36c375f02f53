package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

const scheduleCols = `tenant_id, schedule_id, agent_id, cron, every, timezone, input, thread_id, status, misfire_policy,
	catch_up_max, principal_id, scopes, roles, next_run_at, last_tick_at, last_run_id, last_error, created_at, updated_at`

func scanSchedule(row pgx.Row) (store.Schedule, error) {
	var s store.Schedule
	var input, scopes, roles []byte
	var next, last, created, updated *time.Time
	if err := row.Scan(&s.TenantID, &s.ScheduleID, &s.AgentID, &s.Cron, &s.Every, &s.Timezone, &input, &s.ThreadID,
		&s.Status, &s.MisfirePolicy, &s.CatchUpMax, &s.PrincipalID, &scopes, &roles, &next, &last, &s.LastRunID,
		&s.LastError, &created, &updated); err != nil {
		return s, err
	}
	s.Input = sqlstore.RawFrom(input)
	s.NextRunAt, s.LastTickAt = fromTSPtr(next), fromTSPtr(last)
	s.CreatedAt, s.UpdatedAt = fromTS(created), fromTS(updated)
	if err := sqlstore.FromJSON(scopes, &s.Scopes); err != nil {
		return s, err
	}
	return s, sqlstore.FromJSON(roles, &s.Roles)
}

// CreateSchedule inserts s. ErrConflict if the id exists.
func (db *DB) CreateSchedule(ctx context.Context, s store.Schedule) error {
	scopes, roles, err := sqlstore.EncodeScheduleAuth(s)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO schedules (`+scheduleCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,
		$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)`,
		s.TenantID, s.ScheduleID, s.AgentID, s.Cron, s.Every, s.Timezone, string(s.Input), s.ThreadID, s.Status,
		s.MisfirePolicy, s.CatchUpMax, s.PrincipalID, scopes, roles, tsPtr(s.NextRunAt), tsPtr(s.LastTickAt),
		s.LastRunID, s.LastError, ts(s.CreatedAt), ts(s.UpdatedAt))
	return mapErr(err, "schedule "+s.ScheduleID)
}

// GetSchedule: ErrNotFound if absent or in another tenant.
func (db *DB) GetSchedule(ctx context.Context, tenantID, scheduleID string) (store.Schedule, error) {
	s, err := scanSchedule(db.pool.QueryRow(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE tenant_id = $1 AND schedule_id = $2`,
		tenantID, scheduleID))
	return s, mapErr(err, "schedule "+scheduleID)
}

// ListSchedules lists a tenant's schedules by id.
func (db *DB) ListSchedules(ctx context.Context, p store.ListSchedulesParams) ([]store.Schedule, string, error) {
	limit := sqlstore.Limit(p.Limit, 50, 500)
	rows, err := db.pool.Query(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE tenant_id = $1 AND schedule_id > $2
		ORDER BY schedule_id LIMIT $3`, p.TenantID, p.Cursor, limit+1)
	if err != nil {
		return nil, "", mapErr(err, "schedules")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Schedule, error) { return scanSchedule(r) })
	if err != nil {
		return nil, "", mapErr(err, "schedules")
	}
	if out == nil {
		out = []store.Schedule{}
	}
	out, next := sqlstore.PageSchedules(out, limit)
	return out, next, nil
}

// SetScheduleStatus pauses or resumes a schedule.
func (db *DB) SetScheduleStatus(ctx context.Context, tenantID, scheduleID, status string, nextRunAt *time.Time, at time.Time) (store.Schedule, error) {
	s, err := scanSchedule(db.pool.QueryRow(ctx, `UPDATE schedules SET status = $3, next_run_at = $4, updated_at = $5
		WHERE tenant_id = $1 AND schedule_id = $2 RETURNING `+scheduleCols, tenantID, scheduleID, status, tsPtr(nextRunAt), ts(at)))
	return s, mapErr(err, "schedule "+scheduleID)
}

// DeleteSchedule: ErrNotFound if absent or in another tenant.
func (db *DB) DeleteSchedule(ctx context.Context, tenantID, scheduleID string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM schedules WHERE tenant_id = $1 AND schedule_id = $2`, tenantID, scheduleID)
	return mustAffect(tag, err, "schedule "+scheduleID)
}

// DueSchedules lists active schedules of every tenant due at now.
func (db *DB) DueSchedules(ctx context.Context, now time.Time, limit int) ([]store.Schedule, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE status = 'active' AND next_run_at <= $1
		ORDER BY next_run_at LIMIT $2`, sqlstore.UTC(now), sqlstore.Limit(limit, 100, 1000))
	if err != nil {
		return nil, mapErr(err, "schedules")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Schedule, error) { return scanSchedule(r) })
	return out, mapErr(err, "schedules")
}

// AdvanceSchedule moves an active schedule past its fired ticks if its
// next_run_at is still p.FromNextRunAt.
func (db *DB) AdvanceSchedule(ctx context.Context, p store.AdvanceScheduleParams) (bool, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE schedules SET next_run_at = $1, last_tick_at = coalesce($2, last_tick_at),
		last_run_id = CASE WHEN $3 = '' THEN last_run_id ELSE $3 END, last_error = $4, updated_at = $5
		WHERE tenant_id = $6 AND schedule_id = $7 AND status = 'active' AND next_run_at = $8`,
		ts(p.NextRunAt), tsPtr(p.LastTickAt), p.LastRunID, p.LastError, ts(p.UpdatedAt),
		p.TenantID, p.ScheduleID, sqlstore.UTC(p.FromNextRunAt))
	if err != nil {
		return false, mapErr(err, "schedule "+p.ScheduleID)
	}
	return tag.RowsAffected() == 1, nil
}
